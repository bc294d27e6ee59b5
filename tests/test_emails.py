"""Every kind of message parses cleanly and meets the list's standards (asserted on the bytes)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import format_datetime

import pytest
import time_machine
from flask import Flask

from mailer.config import mail_settings
from mailer.emails import (
    RenderCache,
    RenderedEmail,
    Undeliverable,
    UnsafeHeader,
    archive_html,
    preview_digest,
    render_delivery,
)
from mailer.emails.content import digest_content
from mailer.emails.links import PersonalLinks
from mailer.emails.message import build_email
from mailer.emails.text import render_markdown
from mailer.extensions import db
from mailer.models import (
    DeliveryKind,
    Subscriber,
)
from mailer.tokens import InvalidToken, Purpose, read_token
from tests.factories import TO_ADDRESS_KINDS, WORLD_NOW, World, delivery_for, render

NOW = WORLD_NOW
POSTAL = "Documentaries Ltd, 1 Film Street, London N1 1AA"
NEWSLETTERS = {DeliveryKind.DIGEST, DeliveryKind.EARLY_ACCESS, DeliveryKind.TEST}


def parse(data: bytes) -> EmailMessage:
    """Parse as a receiving client would, insisting on no defects anywhere."""
    parsed = message_from_bytes(data, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    for part in parsed.walk():
        assert not part.defects, part.defects
    return parsed


def parts(parsed: EmailMessage) -> tuple[str, str]:
    """(text, html) of a multipart/alternative message."""
    text = parsed.get_body(preferencelist=("plain",))
    html = parsed.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


@pytest.mark.parametrize("kind", list(DeliveryKind))
def test_every_kind_is_standards_clean(app: Flask, world: World, kind: DeliveryKind) -> None:
    message = render(kind, world)
    parsed = parse(message.data)
    for name in ("From", "To", "Subject", "Date", "Message-ID"):
        assert len(parsed.get_all(name) or []) == 1, name
    assert parsed["Message-ID"] == message.message_id
    assert parsed["To"] == TO_ADDRESS_KINDS.get(kind, world.fan.email)
    assert message.recipients == (parsed["To"],)
    assert parsed.get_content_type() == "multipart/alternative"
    children = list(parsed.iter_parts())
    assert [p.get_content_type() for p in children] == ["text/plain", "text/html"]
    for part in children:
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] in ("7bit", "8bit", "quoted-printable")
        assert "MIME-Version" not in part
    text, html = parts(parsed)
    assert "<p" not in text and "<a " not in text  # the text part is not HTML
    assert 'style="' in html and "<style" not in html.lower()
    for external in ("<img", "<link", "<script", "src=", "@import"):
        assert external not in html.lower()
    assert all(len(line) <= 998 for line in message.data.split(b"\r\n"))
    assert POSTAL in text and POSTAL in html
    db.session.rollback()


@pytest.mark.parametrize("kind", sorted(NEWSLETTERS | {DeliveryKind.WELCOME}))
def test_newsletters_carry_list_headers_and_unsubscribe_in_both_parts(
    app: Flask, world: World, kind: DeliveryKind
) -> None:
    parsed = parse(render(kind, world).data)
    unsubscribe = re.fullmatch(r"<(http[^>]+)>", parsed["List-Unsubscribe"])
    assert unsubscribe, parsed["List-Unsubscribe"]
    url = unsubscribe.group(1)
    assert url.startswith("http://localhost/unsubscribe/")
    assert world.fan.email not in url  # opaque token, never the address
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["List-Id"] == "<newsletter.localhost>"
    text, html = parts(parsed)
    assert url in text and f'href="{url}"' in html
    if kind in NEWSLETTERS:
        assert parsed["Precedence"] == "bulk"
        assert parsed["Auto-Submitted"] == "auto-generated"
    else:
        assert "Precedence" not in parsed
    if kind != DeliveryKind.TEST:
        assert read_token(Purpose.UNSUBSCRIBE, url.rsplit("/", 1)[1]).subscriber_id == (
            world.fan.id
        )
    db.session.rollback()


@pytest.mark.parametrize(
    "kind",
    [
        DeliveryKind.CONFIRMATION,
        DeliveryKind.ADDRESS_CONFIRMATION,
        DeliveryKind.ADDRESS_CHANGED,
    ],
)
def test_transactional_messages_are_not_bulk(app: Flask, world: World, kind: DeliveryKind) -> None:
    parsed = parse(render(kind, world, world.pending).data)
    for name in ("Precedence", "Auto-Submitted", "List-Unsubscribe", "List-Id"):
        assert name not in parsed, name
    db.session.rollback()


def test_confirmation_and_address_links(app: Flask, world: World) -> None:
    text, html = parts(parse(render(DeliveryKind.CONFIRMATION, world, world.pending).data))
    token = re.search(r"http://localhost/confirm/(\S+)", text)
    assert token and f'href="{token.group(0)}"' in html
    assert read_token(Purpose.CONFIRM, token.group(1)).subscriber_id == world.pending.id
    change = parse(render(DeliveryKind.ADDRESS_CONFIRMATION, world).data)
    assert change["To"] == "new-home@example.org"
    token = re.search(r"http://localhost/address/(\S+)", parts(change)[0])
    assert token and read_token(Purpose.ADDRESS, token.group(1)).subscriber_id == world.fan.id
    notice = parse(render(DeliveryKind.ADDRESS_CHANGED, world).data)
    assert notice["To"] == "old-home@example.org"
    already = parse(render(DeliveryKind.ALREADY_SUBSCRIBED, world).data)
    assert already["To"] == world.fan.email
    assert "http://localhost/preferences/" in parts(already)[0]


def test_long_list_unsubscribe_reaches_the_wire_unfolded(app: Flask, world: World) -> None:
    base = "https://newsletter." + "long-" * 20 + "example.org/" + "deep/" * 40 + "mailer"
    app.config["MAILER_BASE_URL"] = base
    app.config["MAILER_UNSUBSCRIBE_MAILTO"] = "unsubscribe@example.org"
    message = render(DeliveryKind.DIGEST, world)
    line = next(raw for raw in message.data.split(b"\r\n") if raw.startswith(b"List-Unsubscribe:"))
    match = re.fullmatch(
        rb"List-Unsubscribe: <(https://[!-~]+)>, <mailto:unsubscribe@example\.org\?subject="
        rb"unsubscribe>",
        line,
    )
    assert match, line
    assert len(match.group(1)) > 300
    assert match.group(1).startswith(base.encode() + b"/unsubscribe/")
    assert b"=?" not in line
    assert parse(message.data)["List-Id"] == f"<newsletter.{base.split('/')[2]}>"


def test_configured_list_id_and_envelope_sender(app: Flask, world: World) -> None:
    app.config["MAILER_LIST_ID"] = "Documentaries <films.example.org>"
    app.config["MAILER_ENVELOPE_FROM"] = "bounces@example.org"
    app.config["MAILER_FROM"] = "Dökumentaries <news@example.org>"
    message = render(DeliveryKind.DIGEST, world)
    parsed = parse(message.data)
    assert parsed["List-Id"] == "Documentaries <films.example.org>"
    assert message.sender == "bounces@example.org"
    assert parsed["From"].addresses[0].display_name == "Dökumentaries"
    assert message.data.startswith(b"From: =?utf-8?")  # encoded, not raw 8-bit, in headers


def test_message_id_is_fixed_per_delivery(app: Flask, world: World) -> None:
    row = delivery_for(DeliveryKind.DIGEST, world)
    first = render_delivery(row, world.fan, RenderCache(), NOW)
    again = render_delivery(row, world.fan, RenderCache(), NOW + timedelta(hours=1))
    assert row.message_id == first.message_id == again.message_id
    assert parse(again.data)["Message-ID"] == first.message_id
    other = render_delivery(delivery_for(DeliveryKind.WELCOME, world), world.fan, RenderCache())
    assert other.message_id != first.message_id


def _entry_links(text: str) -> set[str]:
    return set(re.findall(r"http://localhost/(?:early|films)/\S+", text))


def test_digest_gates_early_access_per_reader(app: Flask, world: World) -> None:
    cache = RenderCache()
    seen: dict[str, tuple[str, str]] = {}
    for reader in (world.fan, world.plain, world.pending):
        row = delivery_for(DeliveryKind.DIGEST, world, reader)
        seen[reader.email] = parts(parse(render_delivery(row, reader, cache, NOW).data))
    for reader, (text, html) in seen.items():
        # Public film: its page and watch link, for everyone.
        assert "http://localhost/films/a-state-of-mind" in text
        assert 'href="https://watch.example.org/a-state-of-mind"' in html
        # A film neither public nor early: coming soon, no link at all.
        assert "secret-soon" not in text + html
        assert "soon-film" not in text + html
        assert "secret-early" not in text + html  # an early film's watch URL never leaks
        assert "early-film" not in text + html
        early_links = re.findall(r"http://localhost/early/[^\s\"]+", text + html)
        if reader == world.fan.email:
            (token,) = {u.rsplit("/", 1)[1] for u in early_links}
            claims = read_token(Purpose.EARLY_ACCESS, token)
            assert (claims.subscriber_id, claims.film_id) == (world.fan.id, world.early.id)
            assert text.count("Coming soon.") == 1
        else:
            assert early_links == []
            assert text.count("Coming soon.") == 2 and html.count("Coming soon.") == 2
    assert {k[2] for k in cache.prerendered} == {"en:early:pes", "en:plain:pes"}


def test_fast_path_is_the_slow_path(app: Flask, world: World) -> None:
    # Signed links carry a timestamp: freeze the clock so both paths sign the same.
    with time_machine.travel(NOW, tick=False):
        _compare_fast_and_slow(world)


def _compare_fast_and_slow(world: World) -> None:
    cache = RenderCache()
    for reader in (world.fan, world.plain):
        row = delivery_for(DeliveryKind.DIGEST, world, reader)
        fast = render_delivery(row, reader, cache, NOW)
        early = reader is world.fan
        settings = mail_settings()
        slow = build_email(
            digest_content(
                world.digest, NOW, PersonalLinks(reader, settings.base_url), early, settings
            ),
            reader.email,
            fast.message_id,
            format_datetime(NOW),
            settings,
        ).as_bytes()
        # Really assembled from pre-rendered bytes, not the slow way.
        assert cache.fast_renders == (1 if early else 2) and cache.slow_renders == 0
        boundary = re.compile(rb"={15}\d+==")
        assert boundary.sub(b"B", fast.data) == boundary.sub(b"B", slow)
        parsed = parse(fast.data)
        assert parsed["To"] == reader.email
        assert parsed["Date"] == format_datetime(NOW)


def test_odd_addresses_take_the_slow_path(app: Flask, world: World) -> None:
    reader = Subscriber(email="jörg@example.org", status="confirmed", nonce="n-jorg")
    db.session.add(reader)
    db.session.flush()
    cache = RenderCache()
    message = render_delivery(delivery_for(DeliveryKind.DIGEST, world, reader), reader, cache, NOW)
    assert (cache.fast_renders, cache.slow_renders) == (0, 1)
    assert message.recipients == ("jörg@example.org",)
    assert parse(message.data)["To"] == "jörg@example.org"


def test_early_access_alert(app: Flask, world: World) -> None:
    parsed = parse(render(DeliveryKind.EARLY_ACCESS, world).data)
    assert parsed["Subject"] == "Early access: The Early Film"
    text, html = parts(parsed)
    (url,) = set(re.findall(r"http://localhost/early/[^\s\"]+", text + html))
    assert read_token(Purpose.EARLY_ACCESS, url.rsplit("/", 1)[1]).film_id == world.early.id
    assert "secret-early" not in text + html
    row = delivery_for(DeliveryKind.EARLY_ACCESS, world, world.plain)
    with pytest.raises(Undeliverable):
        render_delivery(row, world.plain, RenderCache(), NOW)


def test_welcome_lists_early_films_only_for_those_who_want_them(app: Flask, world: World) -> None:
    fan_text, _ = parts(parse(render(DeliveryKind.WELCOME, world).data))
    assert "The Early Film" in fan_text and "http://localhost/early/" in fan_text
    assert "The Coming Film" not in fan_text
    plain_text, plain_html = parts(parse(render(DeliveryKind.WELCOME, world, world.plain).data))
    assert "The Early Film" not in plain_text + plain_html
    assert "/early/" not in plain_text + plain_html


def test_test_send_uses_example_links_that_work_for_nobody(app: Flask, world: World) -> None:
    message = render(DeliveryKind.TEST, world)
    parsed = parse(message.data)
    assert parsed["Subject"] == "[TEST] Three films this week"
    assert message.recipients == ("editor@example.org",)
    text, _html = parts(parsed)
    tokens = re.findall(r"http://localhost/(unsubscribe|preferences|early)/(\S+)", text)
    assert {purpose for purpose, _ in tokens} == {"unsubscribe", "preferences", "early"}
    for purpose, token in tokens:
        with pytest.raises(InvalidToken):
            read_token(Purpose(purpose), token)


def test_preview_shows_what_a_fan_receives(app: Flask, world: World) -> None:
    preview = preview_digest(world.digest, NOW, mail_settings())
    assert isinstance(preview, RenderedEmail)
    assert preview.subject == "Three films this week"
    assert preview.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert preview.headers["Precedence"] == "bulk"
    assert "The Early Film" in preview.text and "/early/example-" in preview.html
    assert POSTAL in preview.text and POSTAL in preview.html


def test_archive_is_public_only(app: Flask, world: World) -> None:
    page = str(archive_html(world.digest, NOW, mail_settings()))
    assert "A State of Mind" in page and "Coming soon." in page
    assert "/early/" not in page and "/unsubscribe/" not in page
    assert "secret-early" not in page


def test_hostile_digest_content_is_inert(app: Flask, world: World) -> None:
    hostile = (
        "Hi <script>alert('x')</script> <img src=x onerror=alert(1)> "
        "[click](javascript:alert(2)) [mail](mailto:editor@example.org) {{ config }} "
        "{% for x in range(3) %}loop{% endfor %}"
    )
    world.digest.intro_markdown = hostile
    world.digest.films[0].note = "<a href='javascript:evil()'>note</a> {{ config.SECRET_KEY }}"
    db.session.commit()
    text, html = parts(parse(render(DeliveryKind.DIGEST, world).data))
    for part in (text, html):
        assert "javascript:" not in part
        assert "onerror" not in part
        assert "alert(" not in part
        assert app.config["SECRET_KEY"] not in part
        assert "{{ config }}" in part and "loop{% endfor %}" in part
    assert "<script" not in html and "<img" not in html
    assert 'href="mailto:editor@example.org"' in html


def test_render_markdown_keeps_safe_markup_only() -> None:
    out = render_markdown(
        "**bold** [ok](https://example.org) [bad](data:text/html,x) <iframe src=x></iframe>"
    )
    assert "<strong>bold</strong>" in out
    assert 'href="https://example.org"' in out
    assert "data:" not in out and "iframe" not in out


def test_header_injection_is_refused(app: Flask, world: World) -> None:
    world.digest.subject = "Hello\r\nBcc: victim@example.org"
    db.session.commit()
    with pytest.raises(UnsafeHeader):
        render(DeliveryKind.DIGEST, world)
    db.session.rollback()
    world.digest.subject = "Fine"
    db.session.commit()
    row = delivery_for(DeliveryKind.TEST, world)
    row.to_address = "a@example.org\r\nBcc: victim@example.org"
    with pytest.raises(UnsafeHeader):
        render_delivery(row, None, RenderCache(), NOW)


def test_long_paragraphs_keep_lines_short(app: Flask, world: World) -> None:
    world.digest.intro_markdown = " ".join(["documentary"] * 600)
    db.session.commit()
    message = render(DeliveryKind.DIGEST, world)
    assert max(len(line) for line in message.data.split(b"\r\n")) <= 998
    text, html = parts(parse(message.data))
    assert text.count("documentary") == 600 and html.count("documentary") == 600


def test_a_long_lived_cache_follows_releases(app: Flask, world: World) -> None:
    cache = RenderCache()
    before = render_delivery(delivery_for(DeliveryKind.DIGEST, world), world.fan, cache, NOW)
    assert "http://localhost/early/" in parts(parse(before.data))[0]
    released = datetime(2027, 1, 16, 9, 0, tzinfo=UTC)  # the early film is public now
    reader = world.plain
    after = render_delivery(
        delivery_for(DeliveryKind.DIGEST, world, reader), reader, cache, released
    )
    text, html = parts(parse(after.data))
    assert "/early/" not in text + html
    assert "http://localhost/films/early-film" in text
    assert 'href="https://watch.example.org/secret-early"' in html  # public now: watch link
