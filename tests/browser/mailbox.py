"""Mail caught by the test SMTP server, read the way a person (or their mail client) reads it."""

from __future__ import annotations

import re
import time
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import getaddresses
from html.parser import HTMLParser

from playwright.sync_api import Page

from tests.smtp_server import Received, ScriptedSMTPServer

URL_IN_TEXT = re.compile(r"https?://[^\s<>\"')\]]+")


class _LinkParser(HTMLParser):
    """Collects the href of every <a> in an HTML part."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.links.append(href)


@dataclass(frozen=True)
class Mail:
    """One message as received: its parsed form, its parts and its links."""

    received: Received

    @property
    def message(self) -> EmailMessage:
        return self.received.message

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    @property
    def recipients(self) -> list[str]:
        """The envelope recipients (lower-cased)."""
        return [r.lower() for r in self.received.rcpt_tos]

    def _part(self, subtype: str) -> str:
        part = self.message.get_body(preferencelist=(subtype,))
        return "" if part is None else str(part.get_content())

    @property
    def text(self) -> str:
        return self._part("plain")

    @property
    def html(self) -> str:
        return self._part("html")

    @property
    def links(self) -> list[str]:
        """Every link of the HTML part, then any URL of the text part not already there."""
        parser = _LinkParser()
        parser.feed(self.html)
        found = list(parser.links)
        found += [u for u in URL_IN_TEXT.findall(self.text) if u not in found]
        return found

    def link(self, containing: str) -> str:
        """The first link whose URL contains ``containing`` (e.g. "/confirm/")."""
        for url in self.links:
            if containing in url:
                return url
        raise AssertionError(f"no link containing {containing!r} in {self.subject!r}: {self.links}")

    @property
    def list_unsubscribe_url(self) -> str:
        """The http(s) URL of the List-Unsubscribe header."""
        header = str(self.message["List-Unsubscribe"] or "")
        for url in re.findall(r"<([^>]+)>", header):
            if url.startswith(("https://", "http://")):
                return url
        raise AssertionError(f"no http(s) List-Unsubscribe in {header!r}")

    def one_click_unsubscribe(self) -> int:
        """POST the RFC 8058 one-click body to List-Unsubscribe, as a mail provider does."""
        assert str(self.message["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
        request = urllib.request.Request(
            self.list_unsubscribe_url,
            data=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)

    def show(self, page: Page) -> None:
        """Render the HTML part in ``page`` as a mail client would: no scripts, no site CSS."""
        page.set_content(self.html or f"<pre>{self.text}</pre>")


class Mailbox:
    """Waits for mail to an address on the test SMTP server."""

    def __init__(self, server: ScriptedSMTPServer) -> None:
        self.server = server

    def all_to(self, address: str) -> list[Mail]:
        """Every message received so far for ``address``, oldest first."""
        wanted = address.lower()
        return [
            Mail(r)
            for r in self.server.received
            if wanted in [x.lower() for x in r.rcpt_tos]
            or wanted in [a.lower() for _, a in getaddresses([str(Mail(r).message["To"] or "")])]
        ]

    def wait_for(self, address: str, subject: str = "", timeout: float = 60.0) -> Mail:
        """The newest message to ``address`` whose subject contains ``subject``; wait for one."""
        deadline = time.monotonic() + timeout
        while True:
            matching = [m for m in self.all_to(address) if subject.lower() in m.subject.lower()]
            if matching:
                return matching[-1]
            if time.monotonic() > deadline:
                seen = [(r.rcpt_tos, Mail(r).subject) for r in self.server.received]
                raise AssertionError(
                    f"no mail to {address} with {subject!r} in its subject "
                    f"within {timeout:.0f}s; received: {seen}"
                )
            time.sleep(0.1)
