"""Languages: every marked string has a German translation, templates mark their words, and each
visitor and subscriber gets pages and mail in their own language."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from email import message_from_bytes
from email.message import Message as EmailMessage
from email.policy import default
from io import BytesIO
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import Flask
from flask.testing import FlaskClient
from jinja2 import Environment
from sqlalchemy import select

from mailer.backends import Message
from mailer.emails import RenderCache, render_delivery
from mailer.extensions import db
from mailer.journal import enqueue_digest
from mailer.models import (
    Delivery,
    DigestStatus,
    Film,
    Subscriber,
)
from mailer.sending import Sender, claim_batch
from mailer.tokens import Purpose, make_token
from tests.factories import add_digest, add_subscribers

ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = ROOT / "mailer" / "translations" / "de" / "LC_MESSAGES"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
GERMAN = {"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}
# Admin pages are not translated yet: they follow the admin's Accept-Language once they are.
NOT_YET_MARKED = ("admin/", "embed/admin_form")
# Words in templates that are the same in every language.
SAME_IN_EVERY_LANGUAGE = {"JSON", "Documentaries"}


@pytest.fixture
def ctx(app: Flask) -> Iterator[None]:
    with app.app_context():
        yield
        db.session.rollback()


def _extracted() -> dict[str, list[str]]:
    """Every marked string of code and templates (as `make messages` finds them) and where."""
    method_map = [
        ("mailer/**.py", "python"),
        ("templates/**.html", "jinja2"),
        ("templates/**.txt", "jinja2"),
    ]
    options = {"templates/**.html": {"trimmed": "true"}, "templates/**.txt": {"trimmed": "true"}}
    keywords = {"_": None, "gettext": None, "_l": None, "N_": None, "lazy_gettext": None}
    found: dict[str, list[str]] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options, keywords=keywords
    ):
        msgid = message if isinstance(message, str) else message[0]
        found.setdefault(msgid, []).append(f"{filename}:{lineno}")
    return found


def test_every_marked_string_has_a_german_translation() -> None:
    with (CATALOGUE / "messages.po").open("rb") as po:
        catalogue = read_po(po)
    translated = {m.id: m for m in catalogue if m.id and m.string and not m.fuzzy}
    missing = {msgid: where for msgid, where in _extracted().items() if msgid not in translated}
    assert not missing, (
        "untranslated strings (run `make messages`, then translate them in "
        f"{CATALOGUE / 'messages.po'}):\n"
        + "\n".join(f"  {msgid!r}  ({', '.join(where)})" for msgid, where in missing.items())
    )


def test_the_compiled_catalogue_is_up_to_date() -> None:
    with (CATALOGUE / "messages.po").open("rb") as po:
        catalogue = read_po(po)
    compiled = BytesIO()
    write_mo(compiled, catalogue)
    assert (CATALOGUE / "messages.mo").read_bytes() == compiled.getvalue(), (
        "messages.mo is older than messages.po: run `make messages`"
    )


def _bare_words(source: str) -> list[str]:
    """Text of a template outside {% trans %} blocks, tags and expressions, that has words."""
    text = []
    inside_trans = False
    for _lineno, token, value in Environment(extensions=["jinja2.ext.i18n"]).lex(source):
        if token == "name" and value in ("trans", "endtrans"):
            inside_trans = value == "trans"
        elif token == "data" and not inside_trans:
            text.append(value)
        elif token in ("variable_begin", "block_begin"):
            text.append("\x00")
    visible = re.sub(r"<[^>]*>|&\w+;|https?://\S+", "\x00", "".join(text))
    bare = []
    for piece in re.split(r"[\x00\n]", visible):
        words = [w for w in re.findall(r"[A-Za-z]{2,}", piece) if w not in SAME_IN_EVERY_LANGUAGE]
        if words:
            bare.append(piece.strip())
    return bare


def test_templates_have_no_words_outside_translation_marks() -> None:
    unmarked = {}
    for path in sorted((ROOT / "templates").rglob("*")):
        name = path.relative_to(ROOT / "templates").as_posix()
        if path.suffix not in (".html", ".txt") or name.startswith(NOT_YET_MARKED):
            continue
        # <style> blocks are CSS, not words.
        source = re.sub(r"<style>.*?</style>", "", path.read_text(), flags=re.DOTALL)
        if words := _bare_words(source):
            unmarked[name] = words
    assert not unmarked, "words to wrap in {{ _('...') }} or {% trans %}:\n" + "\n".join(
        f"  templates/{name}: {words}" for name, words in unmarked.items()
    )


def _csrf(client: FlaskClient, url: str, headers: dict[str, str]) -> str:
    html = client.get(url, headers=headers).get_data(as_text=True)
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html)
    assert match
    return match.group(1)


def _text_of(message: Message) -> str:
    parsed: EmailMessage = message_from_bytes(message.data, policy=default)  # type: ignore[assignment]
    body = parsed.get_body(("plain",))
    assert body is not None
    return f"Subject: {parsed['Subject']}\n{body.get_content()}"


def test_a_german_visitor_signs_up_in_german_and_is_written_to_in_german(
    app: Flask, client: FlaskClient
) -> None:
    page = client.get("/subscribe", headers=GERMAN).get_data(as_text=True)
    assert '<html lang="de">' in page and "Abonnieren Sie unseren Newsletter" in page
    data = {
        "csrf_token": _csrf(client, "/subscribe", GERMAN),
        "email": "leser@example.org",
        "topics": ["digest", "early_access"],
    }
    response = client.post("/subscribe", data=data, headers=GERMAN)
    inbox = client.get(response.headers["Location"], headers=GERMAN).get_data(as_text=True)
    assert "Sehen Sie in Ihren Posteingang" in inbox
    with app.app_context():
        subscriber = db.session.scalar(
            select(Subscriber).where(Subscriber.email == "leser@example.org")
        )
        assert subscriber is not None and subscriber.locale == "de"
        [event] = subscriber.consent_events
        assert event.consent_text.startswith("Mit dem Abonnieren stimmen Sie zu")
        delivery = db.session.scalar(
            select(Delivery).where(Delivery.subscriber_id == subscriber.id)
        )
        assert delivery is not None
        mail = _text_of(render_delivery(delivery, subscriber, RenderCache(), NOW))
        token = make_token(Purpose.CONFIRM, subscriber)
    assert "Subject: Bitte bestätigen Sie Ihr Abonnement" in mail
    assert "Mein Abonnement bestätigen:" in mail and "Confirm" not in mail
    # The confirmation page speaks the subscriber's language, whatever the browser says.
    confirm = client.get(f"/confirm/{token}").get_data(as_text=True)
    assert "Bestätigen Sie Ihr Abonnement" in confirm and "Ja, abonnieren" in confirm


def test_an_english_browser_gets_english_by_default(client: FlaskClient) -> None:
    for headers in ({}, {"Accept-Language": "fr-FR,fr;q=0.9"}, {"Accept-Language": "en-GB"}):
        page = client.get("/subscribe", headers=headers).get_data(as_text=True)
        assert '<html lang="en">' in page and "Subscribe to our newsletter" in page


@pytest.mark.usefixtures("ctx")
def test_one_digest_goes_out_in_each_readers_language(app: Flask) -> None:
    add_subscribers(2, now=NOW, prefix="english")
    add_subscribers(2, now=NOW, prefix="german", locale="de")
    film = Film(slug="soon", title="Soon", release_date=date(2030, 1, 1))
    db.session.add(film)
    digest_id = add_digest("Issue 1", now=NOW, status=DigestStatus.SENDING)
    enqueue_digest(digest_id, NOW)
    db.session.commit()
    backend = app.extensions["mailer.backend"]
    sender = Sender("w", backend, lambda: NOW)
    assert sender.send_batch(claim_batch("w", NOW, 10, 60)).sent == 4
    texts = {m.recipients[0]: _text_of(m) for m in backend.outbox}
    assert len(texts) == 4
    for address, text in texts.items():
        if address.startswith("german"):
            assert "Abmelden:" in text and "Einstellungen ändern:" in text, text
            assert "Unsubscribe:" not in text
        else:
            assert "Unsubscribe:" in text and "Abmelden" not in text, text
    # One pre-rendered message per language, each reused for the second reader.
    assert {key[2].split(":")[0] for key in sender.cache.prerendered} == {"en", "de"}
    assert sender.cache.fast_renders == 4


def test_the_preference_page_changes_the_language(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        add_subscribers(1, now=NOW, prefix="switcher")
        subscriber = db.session.scalar(select(Subscriber).where(Subscriber.email.like("switcher%")))
        assert subscriber is not None
        token = make_token(Purpose.PREFERENCES, subscriber)
        subscriber_id = subscriber.id
    page = client.get(f"/preferences/{token}").get_data(as_text=True)
    assert "Your preferences" in page and '<option value="de" lang="de">Deutsch' in page
    csrf = _csrf(client, f"/preferences/{token}", {})
    url = f"/preferences/{token}/language"
    refused = client.post(url, data={"csrf_token": csrf, "locale": "xx"})
    assert refused.status_code == 400 and "Please choose one of the languages" in refused.text
    saved = client.post(url, data={"csrf_token": csrf, "locale": "de"}, follow_redirects=True)
    assert "Ihre Einstellungen" in saved.text and "Ihre Auswahl ist gespeichert." in saved.text
    with app.app_context():
        subscriber = db.session.get(Subscriber, subscriber_id)
        assert subscriber is not None and subscriber.locale == "de"
        assert subscriber.consent_events[-1].details == {"locale": "de"}


def test_dates_are_written_the_way_each_language_writes_them(
    app: Flask, client: FlaskClient
) -> None:
    with app.app_context():  # (not around the requests: each has its own context, as in service)
        db.session.add(Film(slug="later", title="Later", release_date=date(2030, 3, 14)))
        db.session.commit()
    english = client.get("/films/later").get_data(as_text=True)
    german = client.get("/films/later", headers=GERMAN).get_data(as_text=True)
    assert "March 14, 2030" in english
    assert "14. März 2030" in german and "Demnächst" in german


def test_the_api_speaks_english_and_takes_a_language(app: Flask) -> None:
    from mailer.api.subscribers import SubscribeSchema

    assert SubscribeSchema().load({"email": "a@example.org", "consent_text": "x"})["locale"] == "en"
    with pytest.raises(Exception, match="locale"):
        SubscribeSchema().load({"email": "a@example.org", "consent_text": "x", "locale": "xx"})
