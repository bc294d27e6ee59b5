"""Film and digest text carrying script payloads is shown as text: no script runs, no dialog opens.

Run twice: under the site's CSP (a payload that reached the page shows as a CSP violation) and
with CSP bypassed (a payload that reached the page runs, proving an escaping bug on its own). The
page watch fails the test on any dialog or console error.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, expect

from . import seed
from .actions import HOSTILE
from .mailbox import Mailbox
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


@pytest.fixture(scope="module")
def hostile_digest(served: LiveStack) -> tuple[int, str]:
    """A digest whose subject and Markdown carry the payloads, sent by the worker to a reader."""
    reader = seed.subscriber(served, "hostile.reader@example.org")
    markdown = f"{HOSTILE}\n\n[click me](javascript:alert('link'))\n\n**{HOSTILE}**"
    digest_id = seed.digest(served, "Hostile " + HOSTILE, markdown, ["the-red-chapel"])
    seed.schedule_now(served, digest_id)
    seed.wait_for_status(served, digest_id, "sent")
    return digest_id, reader.email


@pytest.mark.parametrize("bypass_csp", [False, True], ids=["csp", "no-csp"])
def test_hostile_digest_is_text_in_the_admin_and_in_the_mail(
    new_context: Callable[..., BrowserContext],
    admin_session: dict[str, Any],
    mailbox: Mailbox,
    hostile_digest: tuple[int, str],
    bypass_csp: bool,
) -> None:
    digest_id, reader = hostile_digest
    admin = new_context(bypass_csp=bypass_csp, storage_state=admin_session).new_page()
    admin.goto("/admin/digests")
    expect(admin.get_by_role("link", name="Hostile " + HOSTILE)).to_be_visible()
    admin.goto(f"/admin/digests/{digest_id}")
    expect(admin.get_by_role("heading", level=1)).to_have_text("Hostile " + HOSTILE)
    expect(admin.locator("#f-intro_markdown")).to_have_value(re.compile(re.escape(HOSTILE)))
    assert admin.locator("main script, main img, main svg").count() == 0

    # The mail as a mail client shows it, scripts allowed: the payloads are text, links inert.
    mail = mailbox.wait_for(reader, "Hostile")
    assert mail.subject == "Hostile " + HOSTILE
    assert "<script" not in mail.html and "javascript:" not in mail.html
    reader_page = new_context(bypass_csp=bypass_csp).new_page()
    mail.show(reader_page)
    expect(reader_page.get_by_text(HOSTILE).first).to_be_visible()
    assert reader_page.locator("script, img[onerror], svg").count() == 0
