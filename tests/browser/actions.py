"""What a visitor or an admin does, step by step, for the journeys' tests and the screenshots."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Browser, Page, expect

from . import chromium
from .checks import assert_focus_visible, tab_to
from .stack import LiveStack

# Text that runs script if it ever reaches a page unescaped; an <img> that loads also shows up
# as a console error. Use it in films, subjects and Markdown.
HOSTILE = (
    "<script>alert('script')</script>"
    '"><img src=x onerror=alert("img")>'
    "<svg/onload=alert('svg')>"
    "{{ config }}"
)

SUBSCRIBE_EMAIL = "#subscribe-email"
SUBSCRIBE_BUTTON = ".subscribe-form button[type=submit]"


def fill_subscribe_form_with_keyboard(page: Page, email: str) -> None:
    """From the top of the landing page, Tab to the e-mail field and type, each stop visible."""
    page.goto("/")
    tab_to(page, SUBSCRIBE_EMAIL)
    assert_focus_visible(page)
    page.keyboard.type(email)
    tab_to(page, SUBSCRIBE_BUTTON)
    assert_focus_visible(page)


def subscribe_with_keyboard(page: Page, email: str) -> None:
    """Subscribe from the landing page with the keyboard alone (Tab, type, Enter)."""
    fill_subscribe_form_with_keyboard(page, email)
    with page.expect_navigation():
        page.keyboard.press("Enter")


def press_button_with_keyboard(page: Page, name: str | re.Pattern[str]) -> None:
    """Tab to the button called ``name`` and press Enter (e.g. "Confirm" on the confirm page)."""
    button = page.get_by_role("button", name=name)
    button_id = button.evaluate("b => b.id || (b.id = 'kb-' + Math.random().toString(36).slice(2))")
    tab_to(page, f"#{button_id}")
    assert_focus_visible(page)
    with page.expect_navigation():
        page.keyboard.press("Enter")


def drop_early_access_with_keyboard(page: Page) -> None:
    """On a preferences page, untick the early-access alerts and save, with the keyboard alone."""
    tab_to(page, "input[name=topics][value=early_access]")
    assert_focus_visible(page)
    page.keyboard.press("Space")
    tab_to(page, "form button[type=submit]")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.get_by_text("Your choices are saved.")).to_be_visible()


def admin_sign_in(page: Page, email: str, password: str) -> None:
    """Sign in on /admin/ with the keyboard alone (make the account with ``create_admin``)."""
    page.goto("/admin/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    tab_to(page, "#email")
    assert_focus_visible(page)
    page.keyboard.type(email)
    tab_to(page, "#password")
    assert_focus_visible(page)
    page.keyboard.type(password)
    with page.expect_navigation():
        page.keyboard.press("Enter")


def signed_in_state(
    browser: Browser, stack: LiveStack, email: str, password: str
) -> dict[str, Any]:
    """Make the admin account on ``stack``, sign in with the keyboard, return the cookies.

    Sign-in allows a few attempts a minute, so a run signs in once and hands these cookies to
    every admin context (``storage_state=``).
    """
    from . import seed

    seed.admin(stack, email, password)
    context = chromium.new_context(browser, stack.url)
    page = context.new_page()
    admin_sign_in(page, email, password)
    assert page.url.rstrip("/").endswith("/admin"), page.url
    state: dict[str, Any] = dict(context.storage_state())
    context.close()
    return state
