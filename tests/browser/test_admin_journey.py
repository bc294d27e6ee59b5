"""The admin's journey with the keyboard alone: sign in, add a film, compose a digest in Markdown,
find a subscriber and export the list as CSV.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from . import seed
from .actions import admin_sign_in
from .checks import assert_focus_visible, tab_to
from .conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from .stack import LiveStack

FILM_SLUG = "the-admins-own-film"
DIGEST_SUBJECT = "Fresh from the editing room"
MARKDOWN = "A film we **love**:\n\n- shot in _secret_\n- [its page](https://example.org/film)"


def type_into(page: Page, selector: str, text: str) -> None:
    """Tab forward to a field and type, as a keyboard user fills a form top to bottom."""
    tab_to(page, selector)
    assert_focus_visible(page)
    page.keyboard.type(text)


def press_submit(page: Page, name: str) -> None:
    """Tab to the submit button called ``name`` and press Enter."""
    page.get_by_role("button", name=name, exact=True).evaluate("b => b.id = b.id || 'submit-me'")
    button_id = page.get_by_role("button", name=name, exact=True).get_attribute("id")
    tab_to(page, f"#{button_id}")
    assert_focus_visible(page)
    with page.expect_navigation():
        page.keyboard.press("Enter")


@pytest.fixture
def cleanup(served: LiveStack) -> Iterator[None]:
    """Remove the film and digest the journey made, so other tests see the nine films again."""
    yield
    from sqlalchemy import select

    from mailer.extensions import db
    from mailer.models import Digest

    with served.app_context():
        for digest in db.session.scalars(select(Digest).where(Digest.subject == DIGEST_SUBJECT)):
            db.session.delete(digest)
        db.session.commit()
    served.delete_film(FILM_SLUG)


def test_admin_signs_in_with_the_keyboard(
    new_context: Callable[..., BrowserContext], served: LiveStack, admin_session: dict[str, Any]
) -> None:
    # admin_session made the account; a second, fresh browser signs in from the sign-in page.
    page = new_context().new_page()
    admin_sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    expect(page.get_by_role("navigation", name="Admin")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("Sign out"))).to_contain_text(ADMIN_EMAIL)


def test_admin_adds_a_film_composes_a_digest_finds_a_subscriber_and_exports_csv(
    new_context: Callable[..., BrowserContext],
    served: LiveStack,
    admin_session: dict[str, Any],
    tmp_path: Path,
    cleanup: None,
) -> None:
    page = new_context(storage_state=admin_session).new_page()

    # Add a film with the keyboard; it appears in the list and on the public site.
    page.goto("/admin/films/new")
    type_into(page, "#f-title", "The Admin's Own Film")
    type_into(page, "#f-slug", FILM_SLUG)
    type_into(page, "#f-director", "A. Director")
    type_into(page, "#f-year", "2024")
    type_into(page, "#f-country", "North Korea")
    type_into(page, "#f-description", "Made for the journey test.")
    press_submit(page, "Add film")
    expect(page.get_by_text("Film “The Admin's Own Film” added.")).to_be_visible()
    expect(page.get_by_role("link", name="The Admin's Own Film")).to_be_visible()
    public = new_context().new_page()
    public.goto(f"/films/{FILM_SLUG}")
    expect(public.get_by_role("heading", level=1)).to_have_text("The Admin's Own Film")

    # Compose a digest in Markdown featuring the new film; the draft keeps what was typed.
    film_id = seed.film_id(served, FILM_SLUG)
    page.goto("/admin/digests/new")
    type_into(page, "#f-subject", DIGEST_SUBJECT)
    type_into(page, "#f-intro_markdown", MARKDOWN)
    tab_to(page, f"#include-{film_id}")
    assert_focus_visible(page)
    page.keyboard.press("Space")
    expect(page.locator(f"#include-{film_id}")).to_be_checked()
    press_submit(page, "Save draft")
    expect(page.get_by_text("Draft saved.")).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_have_text(DIGEST_SUBJECT)
    expect(page.locator("#f-intro_markdown")).to_have_value(MARKDOWN)
    expect(page.locator(f"#include-{film_id}")).to_be_checked()
    expect(page.locator(".status").first).to_have_text("draft")

    # Find a subscriber by the start of the address and open their page.
    someone = seed.subscriber(served, "findme.admin@example.org")
    page.goto("/admin/subscribers")
    type_into(page, "#q", "findme")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(1)
    tab_to(page, f"a[href$='/admin/subscribers/{someone.id}']")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text(someone.email)
    expect(page.locator("main")).to_contain_text("confirmed")

    # Export the found subscribers as CSV: a download a spreadsheet opens.
    page.go_back()
    tab_to(page, "a[href*='export.csv']")
    with page.expect_download() as download_info:
        page.keyboard.press("Enter")
    download = download_info.value
    assert download.suggested_filename == "subscribers.csv"
    saved = tmp_path / "subscribers.csv"
    download.save_as(saved)
    table = list(csv.DictReader(io.StringIO(saved.read_text())))
    assert [row["email"] for row in table] == [someone.email]
    assert table[0]["status"] == "confirmed"
