"""The visitor's journey, end to end, with the keyboard alone and mail caught by a real SMTP server.

Subscribe on the landing page, confirm from the mail, receive a digest sent by the worker, change
topics from the digest's preferences link, leave with the one-click POST of its List-Unsubscribe
header, and come back.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from playwright.sync_api import BrowserContext, Page, expect

from . import seed
from .actions import (
    drop_early_access_with_keyboard,
    press_button_with_keyboard,
    subscribe_with_keyboard,
)
from .conftest import PageWatch
from .mailbox import Mail, Mailbox
from .stack import LiveStack

VISITOR = "visitor.journey@example.org"
CONFIRM_SUBJECT = "Please confirm your subscription"
DIGEST_SUBJECT = "This week: a comedy troupe in Pyongyang"
DIGEST_INTRO = "Three films this week, and **one** you should not miss."


def confirm_from(page: Page, mail: Mail) -> None:
    """Open the mail's confirmation link and press its button with the keyboard."""
    response = page.goto(mail.link("/confirm/"))
    assert response is not None and response.status == 200
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm your subscription")
    press_button_with_keyboard(page, "Yes, subscribe me")
    expect(page.get_by_role("heading", level=1)).to_have_text("You are subscribed")


def test_visitor_subscribes_reads_a_digest_changes_topics_leaves_and_comes_back(
    page: Page,
    new_context: Callable[..., BrowserContext],
    served: LiveStack,
    mailbox: Mailbox,
    page_watch: PageWatch,
) -> None:
    page_watch.allow(r"status of 400")  # the dead preferences link answers 400, as it should
    # Subscribe with the keyboard alone; the answer says nothing about the address.
    subscribe_with_keyboard(page, VISITOR)
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")

    # The worker sends the confirmation; its link leads to a page with a button.
    confirmation = mailbox.wait_for(VISITOR, CONFIRM_SUBJECT)
    assert confirmation.recipients == [VISITOR]
    assert "/confirm/" in confirmation.text  # the plain-text part carries the link too
    confirm_from(page, confirmation)
    mailbox.wait_for(VISITOR, "Welcome")

    # A digest goes out through the worker and reaches the visitor.
    digest_id = seed.digest(
        served, DIGEST_SUBJECT, DIGEST_INTRO, ["the-red-chapel", "camp-14-total-control-zone"]
    )
    seed.schedule_now(served, digest_id)
    digest = mailbox.wait_for(VISITOR, DIGEST_SUBJECT)
    seed.wait_for_status(served, digest_id, "sent")
    assert "The Red Chapel" in digest.text and "Camp 14" in digest.text
    assert "<strong>one</strong>" in digest.html  # the Markdown, rendered

    # As a mail client shows it: the films and the intro, no script, no page error.
    reader = new_context().new_page()
    digest.show(reader)
    expect(reader.get_by_text("The Red Chapel").first).to_be_visible()
    expect(reader.locator("strong", has_text="one").first).to_be_visible()
    assert reader.locator("script").count() == 0

    # The digest's preferences link: drop the early-access alerts with the keyboard.
    page.goto(digest.link("/preferences/"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Your preferences")
    expect(page.locator("main")).to_contain_text(VISITOR)
    early = page.locator("input[name=topics][value=early_access]")
    expect(early).to_be_checked()
    drop_early_access_with_keyboard(page)
    expect(early).not_to_be_checked()
    expect(page.locator("input[name=topics][value=digest]")).to_be_checked()
    page.reload()
    expect(early).not_to_be_checked()

    # Leave with one click, as a mail provider posts it: no cookie, no form token.
    assert digest.one_click_unsubscribe() == 200
    response = page.goto(digest.link("/preferences/"))
    assert response is not None and response.status == 400  # every old link died with it
    expect(page.get_by_role("heading", level=1)).to_have_text("This link is not valid")

    # Come back: a fresh confirmation, and confirming works again.
    subscribe_with_keyboard(page, VISITOR)
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")
    deadline = time.monotonic() + 60
    while len([m for m in mailbox.all_to(VISITOR) if m.subject == CONFIRM_SUBJECT]) < 2:
        assert time.monotonic() < deadline, "no second confirmation mail"
        time.sleep(0.2)
    again = [m for m in mailbox.all_to(VISITOR) if m.subject == CONFIRM_SUBJECT][-1]
    assert again.link("/confirm/") != confirmation.link("/confirm/")
    confirm_from(page, again)
