"""Links in admin-written Markdown: only http, https and mailto, as a browser would read them.

Browsers strip leading and trailing C0 controls and spaces from a URL and drop tabs and newlines
anywhere in it (the WHATWG URL parser), so `` java\\tscript:`` runs as ``javascript:``. Every
obfuscation below must lose its href in the preview, the sent HTML part and the archive page,
while the link's words stay.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import Message as ParsedMessage

import pytest
from flask import Flask
from flask.testing import FlaskClient

from mailer.config import mail_settings
from mailer.emails import preview_digest
from mailer.emails.text import link_target, render_markdown
from mailer.extensions import db
from mailer.journal import queue_message
from mailer.models import DeliveryKind, Digest, DigestStatus
from mailer.sending import Sender, claim_batch

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
WORDS = "Words kept"
HOSTILE = {
    "tab and leading space": '<a href=" java\tscript:alert(1)">{w}</a>',
    "markdown tab": "[{w}](<java\tscript:alert(1)>)",
    "newline": '<a href="java\nscript:alert(1)">{w}</a>',
    "carriage return": '<a href="java\rscript:alert(1)">{w}</a>',
    "entity tab": '<a href="java&#x09;script:alert(1)">{w}</a>',
    "named tab": '<a href="java&Tab;script:alert(1)">{w}</a>',
    "named newline": '<a href="java&NewLine;script:alert(1)">{w}</a>',
    "decimal entity": '<a href="&#106;avascript:alert(1)">{w}</a>',
    "hex entities": '<a href="&#x6A;&#x61;vascript:alert(1)">{w}</a>',
    "entity colon": '<a href="javascript&colon;alert(1)">{w}</a>',
    "mixed case": '<a href="JaVaScRiPt:alert(1)">{w}</a>',
    "leading NUL": '<a href="\x00javascript:alert(1)">{w}</a>',
    "inner NUL": '<a href="java\x00script:alert(1)">{w}</a>',
    "leading controls": '<a href="\x01\x02 javascript:alert(1)">{w}</a>',
    "entity space": '<a href="&#x20;javascript:alert(1)">{w}</a>',
    "markdown leading space": "[{w}]( javascript:alert(1))",
    "markdown": "[{w}](javascript:alert(1))",
    "data": '<a href="data:text/html;base64,PHNjcmlwdD4=">{w}</a>',
    "markdown data": "[{w}](data:text/html,alert(1))",
    "vbscript": '<a href="vbscript:msgbox(1)">{w}</a>',
    "tab before colon": '<a href="javascript\t:alert(1)">{w}</a>',
    "no-break space": '<a href="\u00a0javascript:alert(1)">{w}</a>',
    "relative": '<a href="/admin/digests">{w}</a>',
    "protocol-relative": '<a href="//evil.example/x">{w}</a>',
    "fragment": '<a href="#top">{w}</a>',
    "file": '<a href="file:///etc/passwd">{w}</a>',
}
SAFE = {
    "https": ("[{w}](https://example.org/a?b=1&c=2)", "https://example.org/a?b=1&amp;c=2"),
    "http upper case": ('<a href="HTTP://example.org/">{w}</a>', "HTTP://example.org/"),
    "mailto": ("[{w}](mailto:editor@example.org)", "mailto:editor@example.org"),
    "padded": ('<a href=" \thttps://example.org/x\n">{w}</a>', "https://example.org/x"),
}
_HREF = re.compile(r"""href\s*=\s*["']?([^"'>\s]*)""", re.I)


def hrefs(html: str) -> list[str]:
    """Every href in an HTML document."""
    return _HREF.findall(html)


def assert_no_hostile_link(html: str) -> None:
    """Only http(s) and mailto links, and the link's words still there."""
    assert WORDS in html
    for href in hrefs(html):
        assert re.match(r"(https?://|mailto:)", href, re.I), href


@pytest.mark.parametrize("source", list(HOSTILE.values()), ids=list(HOSTILE))
def test_a_hostile_link_keeps_its_words_and_loses_its_href(source: str) -> None:
    html = str(render_markdown(source.format(w=WORDS)))
    assert WORDS in html
    assert hrefs(html) == [], html


@pytest.mark.parametrize(("source", "href"), list(SAFE.values()), ids=list(SAFE))
def test_web_and_mail_links_stay(source: str, href: str) -> None:
    html = str(render_markdown(source.format(w=WORDS)))
    assert hrefs(html) == [href], html
    assert 'rel="noopener noreferrer"' in html


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (" java\tscript:alert(1)", None),
        ("\x00\x1f https://example.org/\t", "https://example.org/"),
        ("ht\ntp://example.org/", "http://example.org/"),
        ("MAILTO:a@example.org", "MAILTO:a@example.org"),
        ("data:,x", None),
        ("/relative", None),
        ("", None),
        ("https:", "https:"),
    ],
)
def test_link_target_follows_the_whatwg_stripping(url: str, expected: str | None) -> None:
    assert link_target(url) == expected


def _parts(data: bytes) -> tuple[str, str]:
    message = message_from_bytes(data)
    text = html = ""
    for part in message.walk():
        if isinstance(part, ParsedMessage) and not part.is_multipart():
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            if part.get_content_type() == "text/plain":
                text = payload.decode()
            elif part.get_content_type() == "text/html":
                html = payload.decode()
    return text, html


def test_the_preview_the_sent_mail_and_the_archive_carry_no_script_link(
    app: Flask, client: FlaskClient
) -> None:
    # NUL cannot be stored (PostgreSQL refuses it, validation too): render_markdown's cases only.
    storable = [source for source in HOSTILE.values() if "\x00" not in source]
    intro = "\n\n".join(source.format(w=WORDS) for source in storable)
    with app.app_context():
        digest = Digest(
            subject="Links", intro_markdown=intro, status=DigestStatus.SENT, finished_at=NOW
        )
        db.session.add(digest)
        db.session.commit()
        digest_id = digest.id
        preview = preview_digest(digest, NOW, mail_settings())
        assert_no_hostile_link(preview.html)
        assert "alert(1)" not in preview.text
        queue_message(
            DeliveryKind.TEST, None, NOW, to_address="ed@example.org", digest_id=digest_id
        )
        db.session.commit()
        backend = app.extensions["mailer.backend"]
        stats = Sender("w", backend, lambda: NOW).send_batch(claim_batch("w", NOW, 10, 60))
        assert stats.sent == 1
        text, html = _parts(backend.outbox[0].data)
        assert_no_hostile_link(html)
        assert WORDS in text and "alert(1)" not in text
    archive = client.get(f"/digests/{digest_id}")
    assert archive.status_code == 200
    page = archive.get_data(as_text=True)
    assert WORDS in page
    # The page's own links (stylesheet, skip link, menu) are those of any archived digest.
    with app.app_context():
        plain = Digest(subject="Plain", intro_markdown=WORDS, status=DigestStatus.SENT)
        db.session.add(plain)
        db.session.commit()
        plain_id = plain.id
    own = hrefs(client.get(f"/digests/{plain_id}").get_data(as_text=True))
    assert [h for h in hrefs(page) if not re.match(r"(https?://|mailto:)", h, re.I)] == [
        h for h in own if not re.match(r"(https?://|mailto:)", h, re.I)
    ]
