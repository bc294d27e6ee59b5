"""The early-access journey: a film open to subscribers before its public release.

A confirmed subscriber with the early-access topic gets the alert the worker sends when the
film's window opens, opens its personal link and sees the watch link; anyone else sees "Coming
soon"; once the subscriber drops the topic (with the keyboard, from their preferences), the same
link is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from . import seed
from .actions import drop_early_access_with_keyboard
from .checks import assert_accessible, assert_focus_visible, tab_to
from .conftest import PageWatch
from .mailbox import Mailbox
from .stack import LiveStack

SLUG = "before-everyone-else"
TITLE = "Before Everyone Else"
WATCH_URL = "https://watch.example.org/before-everyone-else"
READER = "early.reader@example.org"


@pytest.fixture
def early_film(served: LiveStack) -> Iterator[str]:
    """A confirmed reader with both topics, then a film whose early access has just opened."""
    seed.subscriber(served, READER)
    now = datetime.now(UTC)
    served.import_films(
        [
            {
                "slug": SLUG,
                "title": TITLE,
                "director": "E. Arly",
                "year": 2026,
                "country": "North Korea",
                "description": "Seen first by the subscribers.",
                "release_date": (now + timedelta(days=30)).date().isoformat(),
                "early_access_at": (now - timedelta(minutes=1)).isoformat(),
                "watch_url": WATCH_URL,
            }
        ]
    )
    yield SLUG
    served.delete_film(SLUG)


def expect_coming_soon(page: Page) -> None:
    """The film page as anyone without access sees it: no description, no watch link."""
    expect(page.get_by_role("heading", level=1)).to_have_text(TITLE)
    expect(page.locator(".coming-soon")).to_contain_text("Coming soon")
    expect(page.locator(f"a[href='{WATCH_URL}']")).to_have_count(0)


def test_subscriber_watches_early_and_others_see_coming_soon(
    page: Page,
    new_context: Callable[..., BrowserContext],
    page_watch: PageWatch,
    mailbox: Mailbox,
    early_film: str,
) -> None:
    page_watch.allow(r"status of 403")  # the link refused once the topic is dropped

    # Before release the film is not in the list, and its page gives nothing away.
    page.goto("/")
    expect(page.locator(".film-card")).to_have_count(9)
    expect(page.get_by_role("link", name=TITLE)).to_have_count(0)
    page.goto(f"/films/{SLUG}")
    expect_coming_soon(page)

    # The worker sends the alert when the window opens; its personal link opens the film.
    alert = mailbox.wait_for(READER, f"Early access: {TITLE}")
    early_link = alert.link("/early/")
    assert WATCH_URL not in alert.text  # the watch link is behind the personal link
    reader = new_context().new_page()
    reader.goto(early_link)
    assert reader.url.endswith(f"/films/{SLUG}"), reader.url  # the token left the address bar
    expect(reader.locator(".early-badge")).to_contain_text("before everyone else")
    tab_to(reader, f"a[href='{WATCH_URL}']")
    assert_focus_visible(reader)
    expect(reader.get_by_role("link", name=f"Watch {TITLE}")).to_be_focused()
    reader.reload()  # this browser remembers the access
    expect(reader.get_by_role("link", name=f"Watch {TITLE}")).to_be_visible()

    # Another browser, a private window: still coming soon.
    other = new_context().new_page()
    other.goto(f"/films/{SLUG}")
    expect_coming_soon(other)

    # The early-access page reads well too.
    checked = new_context(bypass_csp=True).new_page()
    checked.goto(early_link)
    expect(checked.get_by_role("link", name=f"Watch {TITLE}")).to_be_visible()
    assert_accessible(checked)

    # The reader drops the early-access alerts from the alert's preferences link...
    reader.goto(alert.link("/preferences/"))
    drop_early_access_with_keyboard(reader)

    # ...and the personal link no longer opens the film, in a fresh browser.
    again = new_context().new_page()
    response = again.goto(early_link)
    assert response is not None and response.status == 403
    expect(again.locator("main")).to_contain_text("no longer active")
    again.goto(f"/films/{SLUG}")
    expect_coming_soon(again)
