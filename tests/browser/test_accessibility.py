"""Every public and admin page: no serious or critical axe-core violation, no sideways scroll at
a phone's width (pictured at 390 px), and the pages that answer a form read as well as the forms.

The admin's forms are used with the keyboard alone here too (tokens, suppressions, CSV import);
the journeys cover the rest (subscribe, confirm, preferences, sign-in, films, digests).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from . import seed
from .actions import press_button_with_keyboard
from .checks import (
    DESKTOP,
    PHONE,
    assert_accessible,
    assert_focus_visible,
    assert_no_horizontal_overflow,
    tab_to,
)
from .stack import LiveStack


@dataclass(frozen=True)
class Site:
    """The seeded rows the pages show: ids and personal links."""

    pending: seed.SeededSubscriber
    confirmed: seed.SeededSubscriber
    digest_id: int
    sent_digest_id: int
    film_id: int
    embed_form_id: int


@pytest.fixture(scope="module")
def site(served: LiveStack) -> Site:
    """A pending and a confirmed subscriber, a draft and a sent digest, a suppression, a token."""
    seed.suppression(served, "bounced@example.org", "hard bounce, <b>not</b> markup")
    seed.api_token(served, "website build")
    confirmed = seed.subscriber(served, "a11y-confirmed@example.org")
    return Site(
        pending=seed.subscriber(served, "a11y-pending@example.org", confirmed=False),
        confirmed=confirmed,
        digest_id=seed.digest(
            served, "A digest for every reader", "Hello **all**.", ["the-red-chapel"]
        ),
        sent_digest_id=seed.sent_digest(
            served, "A digest that went out", "Read **this**.", ["camp-14-total-control-zone"]
        ),
        film_id=seed.film_id(served, "the-red-chapel"),
        embed_form_id=seed.embed_form(served, "Partner article", "https://partner.example.org"),
    )


PUBLIC: dict[str, Callable[[Site], str]] = {
    "subscribe": lambda s: "/subscribe",
    "check-inbox": lambda s: "/subscribe/check-your-inbox",
    "confirm": lambda s: s.pending.confirm_url,
    "preferences": lambda s: s.confirmed.preferences_url,
    "unsubscribe": lambda s: s.confirmed.unsubscribe_url,
    "invalid-link": lambda s: "/preferences/not-a-token",
    "early-refused": lambda s: "/early/not-a-token",
    "admin-sign-in": lambda s: "/admin/sign-in",
    "archive": lambda s: "/digests",
    "archive-digest": lambda s: f"/digests/{s.sent_digest_id}",
}
ADMIN: dict[str, Callable[[Site], str]] = {
    "home": lambda s: "/admin/",
    "films": lambda s: "/admin/films",
    "film-new": lambda s: "/admin/films/new",
    "film-edit": lambda s: f"/admin/films/{s.film_id}",
    "digests": lambda s: "/admin/digests",
    "digest-new": lambda s: "/admin/digests/new",
    "digest-edit": lambda s: f"/admin/digests/{s.digest_id}",
    "digest-sent": lambda s: f"/admin/digests/{s.sent_digest_id}",
    "delivery-draft": lambda s: f"/admin/digests/{s.digest_id}/delivery",
    "delivery-sent": lambda s: f"/admin/digests/{s.sent_digest_id}/delivery",
    "early-access": lambda s: "/admin/early-access",
    "subscribers": lambda s: "/admin/subscribers",
    "subscriber": lambda s: f"/admin/subscribers/{s.confirmed.id}",
    "subscriber-unsubscribe": lambda s: f"/admin/subscribers/{s.confirmed.id}/unsubscribe",
    "subscriber-erase": lambda s: f"/admin/subscribers/{s.confirmed.id}/erase",
    "import": lambda s: "/admin/subscribers/import",
    "suppressions": lambda s: "/admin/suppressions",
    "embed-forms": lambda s: "/admin/embed-forms",
    "embed-form": lambda s: f"/admin/embed-forms/{s.embed_form_id}",
    "outbox": lambda s: "/admin/outbox",  # mail goes by SMTP here: the page says so
    "api-tokens": lambda s: "/admin/api-tokens",
    "account": lambda s: "/admin/account",
}


def check_page(page: Page, tmp_path: Path, name: str) -> None:
    """At a phone's width: no sideways scroll, axe-core, a full-page picture; then at a desktop's.

    One page load serves both widths (the layout is CSS only), which keeps the run short.
    """
    assert_no_horizontal_overflow(page)
    assert_accessible(page)
    # A table that scrolls sideways takes keyboard focus and says what it holds.
    unnamed = page.locator(".table-scroll:not([tabindex='0'][role=region][aria-label])")
    assert unnamed.count() == 0, unnamed.first.evaluate("e => e.outerHTML.slice(0, 120)")
    png = page.screenshot(path=tmp_path / f"{name}-phone.png", full_page=True)
    assert png.startswith(b"\x89PNG")
    page.set_viewport_size(DESKTOP)  # type: ignore[arg-type]
    assert_no_horizontal_overflow(page)


@pytest.mark.parametrize("name", list(PUBLIC))
def test_public_page(
    new_context: Callable[..., BrowserContext],
    page_watch: Any,
    site: Site,
    tmp_path: Path,
    name: str,
) -> None:
    page_watch.allow(r"status of 4\d\d")  # the dead-link pages answer 400 or 403, as they should
    page = new_context(PHONE, bypass_csp=True).new_page()
    response = page.goto(PUBLIC[name](site))
    assert response is not None and response.status < 500
    check_page(page, tmp_path, name)


@pytest.mark.parametrize("name", list(ADMIN))
def test_admin_page(
    new_context: Callable[..., BrowserContext],
    admin_session: dict[str, Any],
    site: Site,
    tmp_path: Path,
    name: str,
) -> None:
    page = new_context(PHONE, bypass_csp=True, storage_state=admin_session).new_page()
    response = page.goto(ADMIN[name](site))
    assert response is not None and response.status == 200, f"{name}: {response}"
    expect(page.get_by_role("navigation", name="Admin")).to_be_attached()
    check_page(page, tmp_path, f"admin-{name}")


def test_admin_outbox_with_messages(
    new_context: Callable[..., BrowserContext],
    served_with_outbox: LiveStack,
    outbox_admin_session: dict[str, Any],
    tmp_path: Path,
) -> None:
    # On the stack that writes mail to files: the list of messages, and one message.
    seed.subscriber(served_with_outbox, "a11y-outbox@example.org")
    seed.sent_digest(
        served_with_outbox, "A digest in the outbox", "Hello **all**.", ["under-the-sun"]
    )
    page = new_context(
        PHONE, bypass_csp=True, storage_state=outbox_admin_session, base_url=served_with_outbox.url
    ).new_page()
    page.goto("/admin/outbox")
    link = page.get_by_role("link", name="A digest in the outbox").first
    expect(link).to_be_visible()
    check_page(page, tmp_path, "admin-outbox-list")
    with page.expect_navigation():
        link.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("A digest in the outbox")
    page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    check_page(page, tmp_path, "admin-outbox-message")


def type_into(page: Page, selector: str, text: str) -> None:
    """Tab to a field, check its focus shows, type."""
    tab_to(page, selector)
    assert_focus_visible(page)
    page.keyboard.type(text)


def test_admin_forms_work_with_the_keyboard_and_their_answers_pass(
    new_context: Callable[..., BrowserContext],
    admin_session: dict[str, Any],
    tmp_path: Path,
) -> None:
    page = new_context(PHONE, bypass_csp=True, storage_state=admin_session).new_page()

    # An API token: created, its value shown once, then revoked.
    page.goto("/admin/api-tokens")
    type_into(page, "#f-name", "keyboard token")
    press_button_with_keyboard(page, "Create a token")
    expect(page.locator("#new-token")).to_have_text(re.compile(r"\S{20,}"))
    assert_accessible(page)
    assert_no_horizontal_overflow(page)
    press_button_with_keyboard(page, "Revoke keyboard token")
    expect(page.get_by_text("Token “keyboard token” revoked.")).to_be_visible()
    expect(page.get_by_role("region", name="API tokens")).to_contain_text("revoked")

    # An address suppressed by hand, with a note.
    page.goto("/admin/suppressions")
    type_into(page, "#f-email", "keyboard.suppressed@example.org")
    type_into(page, "#f-note", "asked by phone")
    press_button_with_keyboard(page, "Suppress")
    expect(page.get_by_text("Address suppressed")).to_be_visible()
    expect(page.get_by_role("region", name="Suppressed addresses table")).to_contain_text(
        "keyboard.suppressed@example.org"
    )
    assert_accessible(page)

    # A CSV import: the file chosen from the keyboard, the guessed columns kept, imported.
    people = tmp_path / "people.csv"
    people.write_text("email,topics\nkb.one@example.org,digest\nkb.two@example.org,\n")
    page.goto("/admin/subscribers/import")
    tab_to(page, "#f-file")
    assert_focus_visible(page)
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Space")
    chooser.value.set_files(people)
    press_button_with_keyboard(page, "Upload and map the columns")
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Import “people.csv”: map the columns"
    )
    expect(page.locator("#f-email_column")).to_have_value("0")
    assert_accessible(page)
    assert_no_horizontal_overflow(page)
    press_button_with_keyboard(page, "Import")
    expect(page.get_by_role("heading", level=1)).to_have_text("Import finished")
    expect(page.locator("#added-pending")).to_have_text("2")
    assert_accessible(page)
    assert_no_horizontal_overflow(page)


def test_form_answers_read_well_and_errors_are_announced(
    new_context: Callable[..., BrowserContext],
    page_watch: Any,
    served: LiveStack,
    admin_session: dict[str, Any],
) -> None:
    page_watch.allow(r"status of 400")  # the re-shown forms answer 400
    page = new_context(PHONE, bypass_csp=True).new_page()

    # A wrong address, sent with the keyboard: the error is tied to the field and read out.
    page.goto("/subscribe")
    tab_to(page, "#subscribe-email")
    page.keyboard.type("not an address")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    field = page.locator("#subscribe-email")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#subscribe-email-error")).to_be_visible()
    assert_accessible(page)
    assert_no_horizontal_overflow(page)

    # Confirming and unsubscribing with the keyboard: both answers pass too.
    someone = seed.subscriber(served, "a11y-answers@example.org", confirmed=False)
    page.goto(someone.confirm_url)
    press_button_with_keyboard(page, "Yes, subscribe me")
    expect(page.get_by_role("heading", level=1)).to_have_text("You are subscribed")
    assert_accessible(page)
    page.goto(someone.unsubscribe_url)
    press_button_with_keyboard(page, "Unsubscribe me")
    expect(page.get_by_role("heading", level=1)).to_have_text("You are unsubscribed")
    assert_accessible(page)
    assert_no_horizontal_overflow(page)

    # The admin's film form sent empty: the error summary and the fields pass as well.
    admin = new_context(PHONE, bypass_csp=True, storage_state=admin_session).new_page()
    admin.goto("/admin/films/new")
    press_button_with_keyboard(admin, "Add film")
    expect(admin.locator("[aria-invalid=true]").first).to_be_visible()
    assert_accessible(admin)
    assert_no_horizontal_overflow(admin)
