"""Film text carrying script payloads is shown as text: no script runs, no dialog opens.

The context bypasses CSP (see chromium.new_context), so a payload that ran would prove an escaping
bug on its own, not only a CSP gap; the page watch fails the test on any dialog or error.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from .actions import HOSTILE
from .stack import LiveStack

SLUG = "hostile-film"


@pytest.fixture
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


def test_hostile_film_text_is_shown_as_text(page: Page, hostile_film: str) -> None:
    page.goto("/")
    card = page.locator(".film-card", has_text="Hostile")
    expect(card.get_by_role("link")).to_have_text("Hostile " + HOSTILE)
    with page.expect_navigation():
        card.get_by_role("link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Hostile " + HOSTILE)
    expect(page.locator("article.film p").nth(1)).to_have_text(HOSTILE)
    assert page.locator("main script, main img, main svg").count() == 0
    expect(page).to_have_title(f"Hostile {HOSTILE} · Documentaries")
