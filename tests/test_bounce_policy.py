"""record_bounce: hard bounces suppress at once, soft ones in a window, complaints unsubscribe."""

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import select

from mailer.bounces import BounceKind, record_bounce, soft_score
from mailer.extensions import db
from mailer.models import (
    Bounce,
    ConsentEvent,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    InboundReport,
    Subscriber,
    SubscriberStatus,
    Suppression,
)
from mailer.sending import is_suppressed
from mailer.verp import delivery_of_verp, verp_address
from tests.factories import add_digest, add_subscribers

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture
def ctx(app: Flask):
    with app.app_context():
        yield


def _delivery(subscriber_id: int, digest_id: int | None) -> int:
    row = Delivery(
        kind=DeliveryKind.DIGEST,
        subscriber_id=subscriber_id,
        digest_id=digest_id,
        status=DeliveryStatus.SENT,
        next_attempt_at=NOW,
        created_at=NOW,
    )
    db.session.add(row)
    db.session.commit()
    return row.id


def _report(raw: bytes = b"Subject: x\r\n\r\nbody") -> int:
    report = InboundReport(
        source="smtp", raw=raw, raw_digest=hashlib.sha256(raw).hexdigest(), received_at=NOW
    )
    db.session.add(report)
    db.session.flush()
    return report.id


def test_hard_bounce_suppresses_at_once_and_keeps_the_record(ctx: None) -> None:
    [reader] = add_subscribers(1, now=NOW)
    digest_id = add_digest("Week 1", now=NOW)
    delivery_id = _delivery(reader, digest_id)
    bounce = record_bounce(
        delivery_id=delivery_id,
        kind=BounceKind.HARD,
        diagnostic="smtp; 550 5.1.1 user unknown",
        when=NOW,
        source="dsn",
        status="5.1.1",
    )
    db.session.commit()
    assert bounce is not None
    assert (bounce.digest_id, bounce.subscriber_id, bounce.address) == (
        digest_id,
        reader,
        "reader00000@example.org",
    )
    entry = db.session.scalars(select(Suppression)).one()
    assert (entry.reason, entry.email) == ("hard_bounce", "reader00000@example.org")
    assert "5.1.1" in entry.note


def test_soft_bounces_suppress_only_at_the_score_within_the_window(ctx: None) -> None:
    add_subscribers(1, now=NOW)
    address = "Reader00000@Example.org "
    # Four old ones fall out of the 7-day window: they do not count.
    for day in range(4):
        record_bounce(
            address=address,
            kind=BounceKind.SOFT,
            diagnostic="452 mailbox full",
            when=NOW - timedelta(days=10 + day),
            source="dsn",
        )
    for hours in range(4):
        record_bounce(
            address=address,
            kind=BounceKind.SOFT,
            diagnostic="452 mailbox full",
            when=NOW + timedelta(hours=hours),
            source="dsn",
        )
    db.session.commit()
    assert soft_score("reader00000@example.org", NOW + timedelta(hours=4)) == 4
    assert not is_suppressed("reader00000@example.org")
    record_bounce(
        address=address,
        kind=BounceKind.SOFT,
        diagnostic="452 mailbox full",
        when=NOW + timedelta(hours=5),
        source="dsn",
    )
    db.session.commit()
    entry = db.session.scalars(select(Suppression)).one()
    assert entry.reason == "soft_bounces"
    assert entry.note.startswith("5 soft bounces within 7 days")


def test_complaint_unsubscribes_records_consent_and_suppresses(ctx: None) -> None:
    [reader] = add_subscribers(1, now=NOW)
    delivery_id = _delivery(reader, add_digest("Week 1", now=NOW))
    record_bounce(
        delivery_id=delivery_id,
        kind=BounceKind.COMPLAINT,
        diagnostic="abuse",
        when=NOW,
        source="arf",
    )
    db.session.commit()
    subscriber = db.session.get(Subscriber, reader)
    assert subscriber is not None and subscriber.status == SubscriberStatus.UNSUBSCRIBED
    event = db.session.scalars(select(ConsentEvent)).one()
    assert (event.action, event.form) == ("unsubscribe", "complaint")
    assert "reported as spam" in event.consent_text
    assert db.session.scalars(select(Suppression.reason)).one() == "complaint"


def test_the_same_report_naming_an_address_twice_counts_once(ctx: None) -> None:
    add_subscribers(1, now=NOW)
    report_id = _report()
    for _ in range(2):
        record_bounce(
            address="reader00000@example.org",
            kind=BounceKind.SOFT,
            diagnostic="452",
            when=NOW,
            source="imap",
            report_id=report_id,
        )
    db.session.commit()
    assert len(db.session.scalars(select(Bounce)).all()) == 1


def test_unknown_delivery_without_address_records_nothing(ctx: None) -> None:
    assert (
        record_bounce(delivery_id=999, kind=BounceKind.HARD, diagnostic="", when=NOW, source="x")
        is None
    )


def test_verp_address_round_trips_and_refuses_forgeries(app: Flask) -> None:
    app.config["MAILER_BOUNCE_ADDRESS"] = "bounces@news.example.org"
    with app.app_context():
        address = verp_address(42)
        assert address is not None and address.startswith("bounces+42-")
        assert address.endswith("@news.example.org")
        assert delivery_of_verp(address) == 42
        assert delivery_of_verp(address.upper()) == 42  # relays may fold case
        local, _, domain = address.partition("@")
        assert delivery_of_verp(local.replace("+42-", "+43-") + "@" + domain) is None
        assert delivery_of_verp(local + "@elsewhere.example") is None
        assert delivery_of_verp("bounces+42-0000000000000000@news.example.org") is None
        app.config["SECRET_KEY_FALLBACKS"] = [app.config["SECRET_KEY"]]
        app.config["SECRET_KEY"] = "a-new-secret-key-that-is-long-enough-0123456789"
        assert delivery_of_verp(address) == 42  # signed before a key rotation
