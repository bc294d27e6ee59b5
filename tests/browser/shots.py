"""The pictures of the README: one entry per screenshot, shared by `make screenshots` and the tests.

Add a page by adding one ``Shot``: a file name, a viewport, and how to get there. ``visit`` may
drive the site (subscribe, ...) and may read mail from ``stack.smtp``; an ``admin`` shot's page is
already signed in (the run signs in once: sign-in allows only a few attempts a minute).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from playwright.sync_api import Page

from . import seed
from .actions import press_button_with_keyboard, subscribe_with_keyboard
from .checks import DESKTOP, PHONE
from .mailbox import Mailbox
from .stack import LiveStack


@dataclass(frozen=True)
class Shot:
    """One screenshot: where it is saved, at what size, and how the page gets there."""

    name: str
    viewport: dict[str, int]
    visit: Callable[[Page, LiveStack], None]
    full_page: bool = True  # False: only the first screen, as a phone first shows it
    admin: bool = False  # True: the page's context is signed in as the admin


def goto(path: str) -> Callable[[Page, LiveStack], None]:
    """A visit that just opens ``path``."""

    def visit(page: Page, stack: LiveStack) -> None:
        response = page.goto(path)
        assert response is not None and response.ok, f"{path} answered {response}"

    return visit


SHOT_ADMIN = ("pictures@example.org", "a long password for the pictures")
DIGEST_SUBJECT = "Three films from behind the curtain"
DIGEST_INTRO = (
    "This week: a comedy troupe in Pyongyang, a camp guard who tells all, and "
    "**one film you can watch before anyone else**.\n\n"
    "- early access opens on Friday\n- every film has English subtitles"
)
DIGEST_FILMS = ["the-red-chapel", "camp-14-total-control-zone", "the-propaganda-game"]


def subscribed(page: Page, stack: LiveStack) -> None:
    """Subscribe on the landing page, open the confirmation mail's link and press its button."""
    email = f"reader-{time.monotonic_ns()}@example.org"
    subscribe_with_keyboard(page, email)
    mail = Mailbox(stack.smtp).wait_for(email, "confirm")
    page.goto(mail.link("/confirm/"))
    press_button_with_keyboard(page, "Yes, subscribe me")


def received_digest(page: Page, stack: LiveStack) -> None:
    """A digest sent by the worker to a confirmed subscriber, shown as a mail client shows it."""
    reader = seed.subscriber(stack, f"digest-reader-{time.monotonic_ns()}@example.org")
    digest_id = seed.digest(stack, DIGEST_SUBJECT, DIGEST_INTRO, DIGEST_FILMS)
    seed.schedule_now(stack, digest_id)
    Mailbox(stack.smtp).wait_for(reader.email, DIGEST_SUBJECT).show(page)


def composer(page: Page, stack: LiveStack) -> None:
    """The admin's digest page: the Markdown composer, the featured films and the preview."""
    digest_id = seed.digest(stack, DIGEST_SUBJECT, DIGEST_INTRO, DIGEST_FILMS)
    page.goto(f"/admin/digests/{digest_id}")
    # The preview frame loads lazily: bring it into view, wait for the mail, go back up.
    page.locator("#preview iframe").scroll_into_view_if_needed()
    page.frame_locator("#preview iframe").locator("strong").first.wait_for()
    page.evaluate("() => window.scrollTo(0, 0)")


def dashboard(page: Page, stack: LiveStack) -> None:
    """The delivery dashboard of a digest the worker has sent to every confirmed subscriber."""
    for n in range(3):
        seed.subscriber(stack, f"dashboard-reader-{n}-{time.monotonic_ns()}@example.org")
    digest_id = seed.sent_digest(stack, DIGEST_SUBJECT, DIGEST_INTRO, DIGEST_FILMS)
    page.goto(f"/admin/digests/{digest_id}/delivery")


SHOTS: list[Shot] = [
    Shot("landing-desktop", DESKTOP, goto("/")),
    Shot("landing-phone", PHONE, goto("/"), full_page=False),
    Shot("film-desktop", DESKTOP, goto("/films/the-red-chapel"), full_page=False),
    Shot("subscribed-phone", PHONE, subscribed, full_page=False),
    Shot("digest-mail", {"width": 800, "height": 900}, received_digest),
    Shot("digest-mail-phone", PHONE, received_digest, full_page=False),
    # Chromium leaves a sandboxed frame blank in a full-page picture, so the composer is taken
    # on one tall screen that reaches down to the preview.
    Shot(
        "composer-desktop", {"width": 1280, "height": 2700}, composer, full_page=False, admin=True
    ),
    Shot("composer-phone", PHONE, composer, full_page=False, admin=True),
    Shot("dashboard-desktop", DESKTOP, dashboard, full_page=False, admin=True),
    Shot("dashboard-phone", PHONE, dashboard, full_page=False, admin=True),
]
