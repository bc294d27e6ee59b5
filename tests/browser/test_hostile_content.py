"""Film text carrying script payloads is shown as text: no script runs, no dialog opens.

Run twice: under the site's CSP (a payload that reached the page shows as a CSP violation) and
with CSP bypassed (a payload that reached the page runs, proving an escaping bug on its own). The
page watch fails the test on any dialog or console error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import BrowserContext, expect

from .actions import HOSTILE
from .stack import LiveStack

SLUG = "hostile-film"


@pytest.fixture(scope="module")
def hostile_film(served: LiveStack) -> Iterator[str]:
    """A film whose every text field carries the payloads, imported like any other."""
    served.import_films(
        [
            {
                "slug": SLUG,
                "title": "Hostile " + HOSTILE,
                "director": HOSTILE,
                "country": "<b>Narnia</b>",
                "description": HOSTILE + "\n\n" + HOSTILE,
                "year": 2020,
            }
        ]
    )
    yield SLUG
    served.delete_film(SLUG)


@pytest.mark.parametrize("bypass_csp", [False, True], ids=["csp", "no-csp"])
def test_hostile_film_text_is_shown_as_text(
    new_context: Callable[..., BrowserContext], hostile_film: str, bypass_csp: bool
) -> None:
    page = new_context(bypass_csp=bypass_csp).new_page()
    page.goto("/")
    card = page.locator(".film-card", has_text="Hostile")
    expect(card.get_by_role("link")).to_have_text("Hostile " + HOSTILE)
    with page.expect_navigation():
        card.get_by_role("link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Hostile " + HOSTILE)
    expect(page.locator("article.film p").nth(1)).to_have_text(HOSTILE)
    assert page.locator("main script, main img, main svg").count() == 0
    expect(page).to_have_title(f"Hostile {HOSTILE} · Documentaries")
