"""The leak test: gated watch URLs and /early/ links appear only where they should.

Every kind of mail (rendered from real Delivery rows) and every public page is produced for each
kind of recipient, with films in each state. A gated film's watch URL may appear only on its film
page in a browser that opened a personal link; an /early/ link only in mail to a confirmed
subscriber with the early-access topic, for a film in early access. Each row of the table is one
test, named (kind, recipient, film state), so a failure says exactly what leaked where.
"""

from __future__ import annotations

import email
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from mailer import create_app
from mailer.config import mail_settings
from mailer.emails import RenderCache, Undeliverable, archive_html, render_delivery
from mailer.extensions import db, limiter
from mailer.models import (
    Delivery,
    DeliveryKind,
    Digest,
    DigestFilm,
    Film,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from mailer.tokens import InvalidToken, Purpose, make_token, new_nonce, read_token
from tests.conftest import base_env, clear_database

FILM_STATES = ("public", "early", "not_yet", "released")
GATED = {"early", "not_yet"}
RECIPIENTS = ("pending", "confirmed_no_topic", "confirmed_topic", "unsubscribed")
VISITORS = ("anonymous", *RECIPIENTS)
MAIL_KINDS = tuple(str(kind) for kind in DeliveryKind)
# Mail to a subscriber; the test send goes to an admin's address, the archive to everyone.
MAIL_CASES = [
    (kind, recipient, state)
    for kind in MAIL_KINDS
    for recipient in (("admin",) if kind == DeliveryKind.TEST else RECIPIENTS)
    for state in FILM_STATES
] + [("archive", "anonymous", state) for state in FILM_STATES]
PAGES = (
    "index",
    "film",
    "subscribe",
    "preferences",
    "unsubscribe",
    "confirm",
    "not_found",
    "early_refused",
)
PAGE_CASES = [
    (page, visitor, state) for page in PAGES for visitor in VISITORS for state in FILM_STATES
]
EARLY_LINK = re.compile(r"/early/([A-Za-z0-9_.\-]+)")
EXAMPLE_TOKEN = "example-link-for-preview-only"


def watch_url(state: str) -> str:
    """Each film's watch URL is unique, so finding it names the film."""
    return f"https://watch.example.org/{state}-film-secret"


@dataclass
class World:
    """The shared fixtures of this module: films, readers, their mail and their browsers."""

    app: Flask
    films: dict[str, int] = field(default_factory=dict)
    readers: dict[str, int] = field(default_factory=dict)
    digest_id: int = 0
    mail: dict[tuple[str, str, str], str | None] = field(default_factory=dict)
    errors: dict[tuple[str, str, str], str] = field(default_factory=dict)
    browsers: dict[str, FlaskClient] = field(default_factory=dict)
    tokens: dict[str, dict[str, str]] = field(default_factory=dict)


def make_films() -> dict[str, Film]:
    """One film per state, each with its own watch URL."""
    now = utcnow()
    today = now.date()
    dates = {
        "public": (today - timedelta(days=30), None),
        "early": (today + timedelta(days=10), now - timedelta(hours=2)),
        "not_yet": (today + timedelta(days=20), now + timedelta(days=3)),
        "released": (today - timedelta(days=1), now - timedelta(days=8)),
    }
    return {
        state: Film(
            slug=f"{state.replace('_', '-')}-film",
            title=f"The {state.replace('_', ' ').title()} Film",
            description=f"A film that is {state}.",
            release_date=release,
            early_access_at=early_at,
            watch_url=watch_url(state),
        )
        for state, (release, early_at) in dates.items()
    }


def make_readers() -> dict[str, Subscriber]:
    """One subscriber per kind of recipient."""
    now = utcnow()
    shapes = {
        "pending": (SubscriberStatus.PENDING, True),
        "confirmed_no_topic": (SubscriberStatus.CONFIRMED, False),
        "confirmed_topic": (SubscriberStatus.CONFIRMED, True),
        "unsubscribed": (SubscriberStatus.UNSUBSCRIBED, True),
    }
    return {
        name: Subscriber(
            email=f"{name.replace('_', '-')}@example.org",
            nonce=new_nonce(),
            status=status,
            wants_digest=True,
            wants_early_access=topic,
            confirmed_at=now if status != SubscriberStatus.PENDING else None,
            unsubscribed_at=now if status == SubscriberStatus.UNSUBSCRIBED else None,
        )
        for name, (status, topic) in shapes.items()
    }


def readable(data: bytes) -> str:
    """Every header and decoded body part of a message, as one text to search."""
    message = email.message_from_bytes(data, policy=default_policy)
    assert isinstance(message, EmailMessage)
    pieces = [f"{name}: {value}" for name, value in message.items()]
    for part in message.walk():
        if part.get_content_maintype() == "text":
            pieces.append(part.get_content())
    return "\n".join(pieces)


def deliveries_for(world: World, kind: str, recipient: str) -> dict[str, Delivery]:
    """The delivery rows of one kind to one recipient, keyed by the film state they concern."""
    reader_id = world.readers.get(recipient)
    rows: dict[str, Delivery] = {}
    for state in FILM_STATES:
        delivery = Delivery(kind=kind, subscriber_id=reader_id, next_attempt_at=utcnow())
        if kind == DeliveryKind.EARLY_ACCESS:
            delivery.film_id = world.films[state]
        if kind in (DeliveryKind.DIGEST, DeliveryKind.TEST):
            delivery.digest_id = world.digest_id
        if kind == DeliveryKind.TEST:
            delivery.subscriber_id = None
            delivery.to_address = "editor@example.org"
        if kind in (DeliveryKind.ADDRESS_CONFIRMATION, DeliveryKind.ADDRESS_CHANGED):
            delivery.to_address = f"other-{recipient}@example.org"
        rows[state] = delivery
        # Only the alert is about one film; the others are one message covering every film.
        if kind != DeliveryKind.EARLY_ACCESS:
            break
    return rows


def render_all_mail(world: World) -> None:
    """Render every (kind, recipient) once from journalled rows; None where render refuses."""
    now = utcnow()
    with world.app.app_context():
        for kind in MAIL_KINDS:
            recipients = ("admin",) if kind == DeliveryKind.TEST else RECIPIENTS
            for recipient in recipients:
                rows = deliveries_for(world, kind, recipient)
                db.session.add_all(rows.values())
                db.session.commit()
                for state in FILM_STATES:
                    delivery = rows.get(state, rows[FILM_STATES[0]])
                    subscriber = (
                        db.session.get(Subscriber, delivery.subscriber_id)
                        if delivery.subscriber_id
                        else None
                    )
                    try:
                        message = render_delivery(delivery, subscriber, RenderCache(), now)
                    except Undeliverable:
                        world.mail[(kind, recipient, state)] = None
                    except Exception as exc:  # reported by the test of this case
                        world.errors[(kind, recipient, state)] = repr(exc)
                        db.session.rollback()
                    else:
                        world.mail[(kind, recipient, state)] = readable(message.data)
        digest = db.session.get(Digest, world.digest_id)
        assert digest is not None
        archive = str(archive_html(digest, now, mail_settings()))
        for state in FILM_STATES:
            world.mail[("archive", "anonymous", state)] = archive


def open_browsers(world: World) -> None:
    """One browser per visitor; each opens every /early/ link it was ever mailed or could mint."""
    for visitor in VISITORS:
        browser = world.app.test_client()
        world.browsers[visitor] = browser
        if visitor == "anonymous":
            continue
        with world.app.app_context():
            mailed = [
                token
                for text in world.mail.values()
                for token in EARLY_LINK.findall(text or "")
                if _token_belongs_to(world, token, visitor)
            ]
        for token in mailed:
            browser.get(f"/early/{token}")
        # Links minted directly, as an old mail would carry them, for every film.
        for state in FILM_STATES:
            browser.get(f"/early/{world.tokens[visitor]['early_' + state]}")


def _token_belongs_to(world: World, token: str, visitor: str) -> bool:
    """Whether an early-access token was made for this visitor."""
    try:
        claims = read_token(Purpose.EARLY_ACCESS, token)
    except InvalidToken:
        return False
    return claims.subscriber_id == world.readers[visitor]


@pytest.fixture(scope="module")
def world(migrated: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Films, readers, a digest of every film, all mail rendered, every browser's links opened."""
    env = base_env(migrated, Path(tmp_path_factory.mktemp("leaks")))
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        app = create_app({"TESTING": True, "WTF_CSRF_ENABLED": False})
        built = World(app)
        with app.app_context():
            films = make_films()
            readers = make_readers()
            db.session.add_all([*films.values(), *readers.values()])
            db.session.flush()
            digest = Digest(subject="This month's documentaries", intro_markdown="Hello.")
            db.session.add(digest)
            db.session.flush()
            for position, film in enumerate(films.values()):
                db.session.add(DigestFilm(digest_id=digest.id, film_id=film.id, position=position))
            db.session.commit()
            built.films = {state: film.id for state, film in films.items()}
            built.readers = {name: reader.id for name, reader in readers.items()}
            built.digest_id = digest.id
            for name, reader in readers.items():
                built.tokens[name] = {
                    "preferences": make_token(Purpose.PREFERENCES, reader),
                    "unsubscribe": make_token(Purpose.UNSUBSCRIBE, reader),
                    "confirm": make_token(Purpose.CONFIRM, reader),
                } | {
                    f"early_{state}": make_token(Purpose.EARLY_ACCESS, reader, film_id=film.id)
                    for state, film in films.items()
                }
            built.tokens["anonymous"] = dict.fromkeys(
                ("preferences", "unsubscribe", "confirm"), "not-a-token"
            )
        limiter.reset()
        render_all_mail(built)
        open_browsers(built)
        yield built
        limiter.reset()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
    clear_database(migrated)


def mail_may_carry_early_link(kind: str, recipient: str, state: str) -> bool:
    """The rule: only mail to a confirmed subscriber with the topic, for a film in early access."""
    return (
        recipient == "confirmed_topic"
        and state == "early"
        and kind in (DeliveryKind.DIGEST, DeliveryKind.EARLY_ACCESS, DeliveryKind.WELCOME)
    )


@pytest.mark.parametrize(
    ("kind", "recipient", "state"), [pytest.param(*c, id="-".join(c)) for c in MAIL_CASES]
)
def test_mail(world: World, kind: str, recipient: str, state: str) -> None:
    """One (kind, recipient, film state) of mail: no gated watch URL, early links only by rule."""
    where = f"{kind} mail to {recipient}, film {state}"
    error = world.errors.get((kind, recipient, state))
    assert error is None, f"{where}: render failed: {error}"
    text = world.mail[(kind, recipient, state)]
    if text is None:
        # Refused at render time: nothing to leak, but only where sending would be wrong.
        assert kind == DeliveryKind.EARLY_ACCESS, f"{where}: refused to render"
        assert not mail_may_carry_early_link(kind, recipient, state), f"{where}: alert refused"
        return
    assert watch_url(state) not in text or state not in GATED, f"{where}: leaked the watch URL"
    with world.app.app_context():
        film_id = world.films[state]
        real = []
        for token in EARLY_LINK.findall(text):
            if token == EXAMPLE_TOKEN:
                assert kind == DeliveryKind.TEST, f"{where}: example link in real mail"
                continue
            claims = read_token(Purpose.EARLY_ACCESS, token)
            assert claims.subscriber_id == world.readers.get(recipient), (
                f"{where}: carries another subscriber's early link"
            )
            assert claims.film_id in world.films.values(), f"{where}: link to an unknown film"
            if claims.film_id == film_id:
                real.append(token)
    expected = mail_may_carry_early_link(kind, recipient, state)
    if expected:
        assert real, f"{where}: the early-access link is missing"
    else:
        assert not real, f"{where}: leaked an /early/ link"


def page_url(world: World, page: str, visitor: str, state: str) -> str:
    """The URL of one public page as this visitor would reach it."""
    tokens = world.tokens[visitor]
    slug = f"{state.replace('_', '-')}-film"
    return {
        "index": "/",
        "film": f"/films/{slug}",
        "subscribe": "/subscribe",
        "preferences": f"/preferences/{tokens['preferences']}",
        "unsubscribe": f"/unsubscribe/{tokens['unsubscribe']}",
        "confirm": f"/confirm/{tokens['confirm']}",
        "not_found": f"/films/{slug}-missing",
        "early_refused": f"/early/{tokens.get('early_' + state, 'not-a-token')}x",
    }[page]


@pytest.mark.parametrize(
    ("page", "visitor", "state"), [pytest.param(*c, id="-".join(c)) for c in PAGE_CASES]
)
def test_page(world: World, page: str, visitor: str, state: str) -> None:
    """One (page, visitor, film state): watch URLs of gated films only with a grant."""
    url = page_url(world, page, visitor, state)
    where = f"page {page} ({url}) for {visitor}, film {state}"
    response = world.browsers[visitor].get(url)
    html = response.get_data(as_text=True)
    assert response.status_code < 500, f"{where}: {response.status_code}"
    assert "/early/" not in html, f"{where}: shows an /early/ link"
    granted = page == "film" and state == "early" and visitor == "confirmed_topic"
    if state in GATED:
        shown = watch_url(state) in html
        assert shown == granted, f"{where}: watch URL {'leaked' if shown else 'missing'}"
        if page == "index":
            assert f"{state.replace('_', '-')}-film" not in html, (
                f"{where}: a film before its release is listed"
            )
    elif page == "film":
        assert watch_url(state) in html, f"{where}: public watch URL missing"
