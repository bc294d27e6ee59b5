"""The mailbox building block: mail caught on the SMTP server, read and opened as a person does."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

import pytest
from playwright.sync_api import Page, expect

from tests.smtp_server import ScriptedSMTPServer

from .mailbox import Mailbox
from .stack import LiveStack


def send(server: ScriptedSMTPServer, to: str, subject: str, film_url: str) -> None:
    """Hand the server a newsletter-shaped message (text and HTML, one-click headers)."""
    message = EmailMessage()
    message["From"] = "Documentaries <newsletter@example.org>"
    message["To"] = to
    message["Subject"] = subject
    message["List-Unsubscribe"] = "<mailto:u@example.org>, <https://example.org/unsubscribe/t0k>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(f"Watch it: {film_url}\nUnsubscribe: https://example.org/unsubscribe/t0k\n")
    message.add_alternative(
        f'<p><a href="{film_url}">The Red Chapel</a></p>'
        '<p><a href="https://example.org/preferences/t0k">Preferences</a></p>',
        subtype="html",
    )
    with smtplib.SMTP("127.0.0.1", server.port) as conn:
        conn.send_message(message)


def test_mailbox_returns_the_newest_matching_mail_and_its_links(
    served: LiveStack, smtp_server: ScriptedSMTPServer, mailbox: Mailbox, page: Page
) -> None:
    film_url = f"{served.url}/films/the-red-chapel"
    send(smtp_server, "Reader@Example.org", "Old news", film_url)
    send(smtp_server, "reader@example.org", "This week's films", film_url)
    send(smtp_server, "someone-else@example.org", "This week's films", film_url)

    mail = mailbox.wait_for("reader@example.org", subject="this week")
    assert mail.subject == "This week's films"
    assert mail.links == [
        film_url,
        "https://example.org/preferences/t0k",
        "https://example.org/unsubscribe/t0k",
    ]
    assert mail.link("/preferences/") == "https://example.org/preferences/t0k"
    assert mail.list_unsubscribe_url == "https://example.org/unsubscribe/t0k"
    assert len(mailbox.all_to("READER@example.org")) == 2

    mail.show(page)
    expect(page.get_by_role("link", name="Preferences")).to_be_visible()
    page.goto(mail.link("/films/"))
    expect(page.get_by_role("heading", level=1)).to_have_text("The Red Chapel")


def test_mailbox_says_what_arrived_when_the_awaited_mail_does_not(mailbox: Mailbox) -> None:
    with pytest.raises(AssertionError, match=r"no mail to nobody@example\.org"):
        mailbox.wait_for("nobody@example.org", timeout=0.3)
