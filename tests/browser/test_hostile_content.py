"""Film and digest text carrying script payloads is shown as text: no script runs, no dialog opens.

The payloads are shown where people read them: the public film pages, the admin's digest page and
its preview frame, the mail the worker sent, the public archive (/digests and a digest's page),
and the admin outbox viewer of a stack that writes its mail to files.

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
SUBJECT = "Hostile " + HOSTILE
# Markdown drops raw HTML elements (the <script> goes, with its text); what is left of the
# payload must read as text.
MARKDOWN = f"{HOSTILE}\n\n[click me](javascript:alert('link'))\n\n**{HOSTILE}**"
MARKDOWN_LEFT = HOSTILE.split("</script>", 1)[1]
# Anything that would be live markup or a script link if a payload escaped.
LIVE = "script, img[src=x], img[onerror], svg, [onload], [onerror], a[href^='javascript']"
HOSTILE_FILM = {
    "slug": SLUG,
    "title": "Hostile " + HOSTILE,
    "director": HOSTILE,
    "country": "<b>Narnia</b>",
    "description": HOSTILE + "\n\n" + HOSTILE,
    "year": 2020,
}


def sent_hostile_digest(stack: LiveStack, reader: str) -> int:
    """The hostile film in a digest whose subject and Markdown carry the payloads, sent to
    ``reader`` (and every other confirmed subscriber) by the worker; its id."""
    seed.subscriber(stack, reader)
    digest_id = seed.digest(stack, SUBJECT, MARKDOWN, [SLUG, "the-red-chapel"])
    seed.schedule_now(stack, digest_id)
    seed.wait_for_status(stack, digest_id, "sent")
    return digest_id


@pytest.fixture(scope="module")
def hostile_film(served: LiveStack) -> Iterator[str]:
    """A film whose every text field carries the payloads, imported like any other."""
    served.import_films([HOSTILE_FILM])
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
def hostile_digest(served: LiveStack, hostile_film: str) -> Iterator[tuple[int, str]]:
    """The hostile digest, sent; removed (from the archive too) when the module is done."""
    reader = "hostile.reader@example.org"
    digest_id = sent_hostile_digest(served, reader)
    yield digest_id, reader
    served.delete_digest(digest_id)


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
    expect(admin.get_by_role("link", name=SUBJECT)).to_be_visible()
    admin.goto(f"/admin/digests/{digest_id}")
    expect(admin.get_by_role("heading", level=1)).to_have_text(SUBJECT)
    expect(admin.locator("#f-intro_markdown")).to_have_value(re.compile(re.escape(HOSTILE)))
    assert admin.locator(f"main :is({LIVE})").count() == 0

    # The preview frame: the subject, the film and what is left of the Markdown, all as text.
    expect(admin.locator("#preview")).to_contain_text(f"Subject: {SUBJECT}")
    admin.locator("#preview iframe").scroll_into_view_if_needed()
    frame = admin.frame_locator("#preview iframe")
    expect(frame.get_by_role("heading", level=2, name="Hostile " + HOSTILE)).to_be_visible()
    expect(frame.locator("body")).to_contain_text(MARKDOWN_LEFT)
    expect(frame.get_by_text("click me")).to_be_visible()
    assert frame.locator(LIVE).count() == 0

    # The mail as a mail client shows it, scripts allowed: the payloads are text, links inert.
    mail = mailbox.wait_for(reader, "Hostile")
    assert mail.subject == SUBJECT
    assert "<script" not in mail.html and "javascript:" not in mail.html
    reader_page = new_context(bypass_csp=bypass_csp).new_page()
    mail.show(reader_page)
    expect(reader_page.get_by_text(HOSTILE).first).to_be_visible()
    expect(reader_page.locator("body")).to_contain_text(MARKDOWN_LEFT)
    assert reader_page.locator(LIVE).count() == 0


@pytest.mark.parametrize("bypass_csp", [False, True], ids=["csp", "no-csp"])
def test_hostile_digest_is_text_in_the_public_archive(
    new_context: Callable[..., BrowserContext], hostile_digest: tuple[int, str], bypass_csp: bool
) -> None:
    digest_id, _ = hostile_digest
    page = new_context(bypass_csp=bypass_csp).new_page()
    page.goto("/digests")
    link = page.get_by_role("link", name=SUBJECT, exact=True)
    expect(link).to_have_attribute("href", f"/digests/{digest_id}")
    assert page.locator(f"main :is({LIVE})").count() == 0
    with page.expect_navigation():
        link.click()
    expect(page).to_have_title(f"{SUBJECT} · Documentaries")
    expect(page.get_by_role("heading", level=1)).to_have_text(SUBJECT)
    article = page.locator("article")
    expect(article.get_by_role("heading", level=2, name="Hostile " + HOSTILE)).to_be_visible()
    expect(article).to_contain_text(MARKDOWN_LEFT)
    expect(article).to_contain_text("click me")
    expect(article).not_to_contain_text("SECRET_KEY")  # {{ config }} stayed text
    assert page.locator(f"main :is({LIVE})").count() == 0


@pytest.fixture(scope="module")
def hostile_outbox(served_with_outbox: LiveStack) -> Iterator[int]:
    """The hostile film and digest on the stack whose mail goes to files; the digest's id."""
    served_with_outbox.import_films([HOSTILE_FILM])
    digest_id = sent_hostile_digest(served_with_outbox, "outbox.reader@example.org")
    yield digest_id
    served_with_outbox.delete_digest(digest_id)
    served_with_outbox.delete_film(SLUG)


@pytest.mark.parametrize("bypass_csp", [False, True], ids=["csp", "no-csp"])
def test_hostile_digest_is_text_in_the_outbox_viewer(
    new_context: Callable[..., BrowserContext],
    served_with_outbox: LiveStack,
    outbox_admin_session: dict[str, Any],
    hostile_outbox: int,
    bypass_csp: bool,
) -> None:
    admin = new_context(
        bypass_csp=bypass_csp,
        storage_state=outbox_admin_session,
        base_url=served_with_outbox.url,
    ).new_page()
    admin.goto("/admin/outbox")
    links = admin.get_by_role("link", name=SUBJECT, exact=True)
    expect(links.first).to_be_visible()
    assert admin.locator(f"main :is({LIVE})").count() == 0
    with admin.expect_navigation():
        links.first.click()
    expect(admin.get_by_role("heading", level=1)).to_have_text(SUBJECT)
    expect(admin.locator(".mail-text pre")).to_contain_text(HOSTILE)  # the film, in plain text
    expect(admin.locator(".mail-text pre")).to_contain_text(MARKDOWN_LEFT)
    frame = admin.frame_locator(".mail-html iframe")
    expect(frame.get_by_role("heading", level=2, name="Hostile " + HOSTILE)).to_be_visible()
    expect(frame.locator("body")).to_contain_text(MARKDOWN_LEFT)
    assert frame.locator(LIVE).count() == 0
    admin.get_by_text("All headers").click()
    expect(admin.locator("details pre")).to_contain_text(SUBJECT)
    assert admin.locator(f"main :is({LIVE})").count() == 0
