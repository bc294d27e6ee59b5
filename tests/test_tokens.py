"""Signed links: purpose, tampering, expiry, nonce rotation and key rotation."""

from datetime import UTC, datetime

import pytest
import time_machine

from mailer.extensions import db
from mailer.models import Subscriber
from mailer.tokens import (
    ExpiredToken,
    InvalidToken,
    Purpose,
    link,
    make_token,
    new_nonce,
    read_token,
    subscriber_for,
)


@pytest.fixture
def subscriber(app):
    with app.app_context():
        sub = Subscriber(email="reader@example.org", nonce=new_nonce())
        db.session.add(sub)
        db.session.commit()
        yield sub


def test_token_round_trip_without_the_address(app, subscriber) -> None:
    token = make_token(Purpose.UNSUBSCRIBE, subscriber)
    assert "reader" not in token
    found, claims = subscriber_for(Purpose.UNSUBSCRIBE, token)
    assert found.id == subscriber.id
    assert claims.film_id is None


def test_wrong_purpose_is_refused(app, subscriber) -> None:
    token = make_token(Purpose.UNSUBSCRIBE, subscriber)
    with pytest.raises(InvalidToken):
        read_token(Purpose.CONFIRM, token)


def test_tampered_token_is_refused(app, subscriber) -> None:
    token = make_token(Purpose.PREFERENCES, subscriber)
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    with pytest.raises(InvalidToken):
        read_token(Purpose.PREFERENCES, tampered)


def test_confirmation_expires(app, subscriber) -> None:
    with time_machine.travel(datetime(2026, 1, 1, tzinfo=UTC), tick=False):
        token = make_token(Purpose.CONFIRM, subscriber)
    with (
        time_machine.travel(datetime(2026, 1, 3, 0, 0, 1, tzinfo=UTC), tick=False),
        pytest.raises(ExpiredToken) as caught,
    ):
        read_token(Purpose.CONFIRM, token)
    assert caught.value.claims.subscriber_id == subscriber.id


def test_unsubscribe_link_outlives_sixty_days(app, subscriber) -> None:
    with time_machine.travel(datetime(2026, 1, 1, tzinfo=UTC), tick=False):
        token = make_token(Purpose.UNSUBSCRIBE, subscriber)
    with time_machine.travel(datetime(2026, 12, 31, tzinfo=UTC), tick=False):
        assert read_token(Purpose.UNSUBSCRIBE, token).subscriber_id == subscriber.id


def test_rotating_the_nonce_kills_old_links(app, subscriber) -> None:
    token = make_token(Purpose.PREFERENCES, subscriber)
    subscriber.nonce = new_nonce()
    db.session.commit()
    with pytest.raises(InvalidToken):
        subscriber_for(Purpose.PREFERENCES, token)


def test_old_key_still_verifies_after_rotation(app, subscriber) -> None:
    token = make_token(Purpose.UNSUBSCRIBE, subscriber)
    old_key = app.config["SECRET_KEY"]
    app.config["SECRET_KEY"] = "a-brand-new-key-of-at-least-thirty-two-bytes"
    with pytest.raises(InvalidToken):
        read_token(Purpose.UNSUBSCRIBE, token)
    app.config["SECRET_KEY_FALLBACKS"] = [old_key]
    assert read_token(Purpose.UNSUBSCRIBE, token).subscriber_id == subscriber.id


def test_film_bound_token_carries_the_film(app, subscriber) -> None:
    url = link(Purpose.EARLY_ACCESS, subscriber, film_id=7)
    assert url.startswith("http://localhost/early/")
    claims = read_token(Purpose.EARLY_ACCESS, url.rsplit("/", 1)[1])
    assert claims.film_id == 7
