"""The admin's journey with the keyboard alone: sign in, add a film, compose a digest in Markdown,
see its preview, send a test, schedule it, watch the dashboard reach `sent` as the worker sends
it, find a subscriber who received it and export the list as CSV.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from . import seed
from .actions import admin_sign_in, press_button_with_keyboard
from .checks import assert_focus_visible, tab_to
from .conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from .mailbox import Mailbox
from .stack import LiveStack

FILM_SLUG = "the-admins-own-film"
DIGEST_SUBJECT = "Fresh from the editing room"
MARKDOWN = "A film we **love**:\n\n- shot in _secret_\n- [its page](https://example.org/film)"
PROOFREADER = "proofreader@example.org"
# The worker sends to every confirmed subscriber of the served stack; a handful at most.
SENT_WITHIN_MS = 90_000


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
        made = list(db.session.scalars(select(Digest.id).where(Digest.subject == DIGEST_SUBJECT)))
    for digest_id in made:
        served.delete_digest(digest_id)
    served.delete_film(FILM_SLUG)


def test_admin_signs_in_with_the_keyboard(
    new_context: Callable[..., BrowserContext], served: LiveStack, admin_session: dict[str, Any]
) -> None:
    # admin_session made the account; a second, fresh browser signs in from the sign-in page.
    page = new_context().new_page()
    admin_sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    expect(page.get_by_role("navigation", name="Admin")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("Sign out"))).to_contain_text(ADMIN_EMAIL)


def add_film(page: Page, new_context: Callable[..., BrowserContext]) -> None:
    """Add a film with the keyboard; it appears in the list and on the public site."""
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


def compose_digest(page: Page, film_id: int) -> int:
    """Compose a digest in Markdown featuring the film; the draft keeps what was typed. Its id."""
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
    found = re.search(r"/admin/digests/(\d+)", page.url)
    assert found is not None, page.url
    return int(found.group(1))


def check_preview(page: Page) -> None:
    """The preview frame shows the mail a subscriber gets: the Markdown rendered, the film."""
    page.locator("#preview iframe").scroll_into_view_if_needed()  # the frame loads lazily
    frame = page.frame_locator("#preview iframe")
    expect(frame.locator("strong", has_text="love")).to_be_visible()
    expect(frame.locator("em", has_text="secret")).to_be_visible()
    expect(frame.get_by_role("link", name="its page")).to_have_attribute(
        "href", "https://example.org/film"
    )
    expect(frame.get_by_role("heading", name="The Admin's Own Film")).to_be_visible()
    expect(page.locator("#preview")).to_contain_text(f"Subject: {DIGEST_SUBJECT}")
    expect(page.locator("#preview pre")).to_contain_text("The Admin's Own Film")


def send_test(page: Page, mailbox: Mailbox) -> None:
    """Send a test to another address; the worker sends it with [TEST] before the subject."""
    tab_to(page, "#test-to")
    assert_focus_visible(page)
    expect(page.locator("#test-to")).to_have_value(ADMIN_EMAIL)
    page.keyboard.press("Control+A")
    page.keyboard.type(PROOFREADER)
    press_submit(page, "Send test")
    expect(page.get_by_text(f"A test is on its way to {PROOFREADER}")).to_be_visible()
    test_mail = mailbox.wait_for(PROOFREADER, DIGEST_SUBJECT)
    assert test_mail.subject == f"[TEST] {DIGEST_SUBJECT}"
    assert test_mail.recipients == [PROOFREADER]
    assert "<strong>love</strong>" in test_mail.html
    page.reload()
    expect(page.get_by_role("region", name="Latest test sends")).to_contain_text(PROOFREADER)


def schedule_then_send_now(page: Page, digest_id: int) -> None:
    """Schedule the digest a day ahead, see it on the dashboard, then send it now instead."""
    # The date-time field's segments follow the browser's locale, so its value is set the way
    # its picker would set it; the buttons are pressed with the keyboard.
    later = (datetime.now(UTC) + timedelta(days=1)).replace(second=0, microsecond=0)
    expect(page.locator("label[for=send-at]")).to_contain_text("(UTC)")
    page.locator("#send-at").fill(later.strftime("%Y-%m-%dT%H:%M"))
    press_button_with_keyboard(page, re.compile("^Schedule$"))
    assert page.url.endswith(f"/admin/digests/{digest_id}/delivery"), page.url
    expect(page.get_by_text(f"Scheduled for {later:%Y-%m-%d %H:%M} (UTC).")).to_be_visible()
    expect(page.locator("main .status").first).to_have_text("scheduled")
    expect(page.locator("main")).to_contain_text("This page reloads every")

    page.goto(f"/admin/digests/{digest_id}#schedule")
    press_button_with_keyboard(page, "Send now")
    expect(page.get_by_text("The digest is going out now.")).to_be_visible()


def watch_dashboard(page: Page, digest_id: int) -> None:
    """The dashboard reloads itself until the worker has sent every message."""
    assert page.url.endswith(f"/admin/digests/{digest_id}/delivery"), page.url
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Delivery of “{DIGEST_SUBJECT}”")
    expect(page.locator("main .status").first).to_have_text("sent", timeout=SENT_WITHIN_MS)
    expect(page.locator("main")).not_to_contain_text("This page reloads every")
    sent = int(page.locator("dd[data-status=sent]").inner_text())
    assert sent >= 1
    expect(page.locator("dd[data-status=failed]")).to_have_text("0")
    expect(page.locator("dd[data-status=queued]")).to_have_text("0")
    expect(page.locator(".progress-text")).to_have_text(f"{sent} of {sent} done (100.0%)")
    expect(page.locator("main")).to_contain_text("No failures.")


def test_admin_journey_from_a_new_film_to_a_sent_digest_and_a_csv_export(
    new_context: Callable[..., BrowserContext],
    served: LiveStack,
    admin_session: dict[str, Any],
    mailbox: Mailbox,
    tmp_path: Path,
    cleanup: None,
) -> None:
    page = new_context(storage_state=admin_session).new_page()
    # A confirmed subscriber, there before the digest goes out, to receive it and be found.
    someone = seed.subscriber(served, "findme.admin@example.org")

    add_film(page, new_context)
    digest_id = compose_digest(page, seed.film_id(served, FILM_SLUG))
    check_preview(page)
    send_test(page, mailbox)
    schedule_then_send_now(page, digest_id)
    watch_dashboard(page, digest_id)
    digest_mail = mailbox.wait_for(someone.email, DIGEST_SUBJECT)
    assert digest_mail.subject == DIGEST_SUBJECT  # the real one carries no [TEST]
    assert "The Admin's Own Film" in digest_mail.text

    # Find the subscriber by the start of the address and open their page: the digest is there.
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
    deliveries = page.get_by_role("region", name="Deliveries table")
    expect(deliveries.locator(f"a[href$='/admin/digests/{digest_id}']")).to_be_visible()
    expect(
        deliveries.locator("tr", has=page.locator(f"a[href$='/admin/digests/{digest_id}']"))
    ).to_contain_text("sent")

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
