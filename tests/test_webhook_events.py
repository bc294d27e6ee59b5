"""The subscriber's life, hard bounces and finished digests journal webhook events, nothing more."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from mailer.backends import backend_from_url
from mailer.digests import finish_digests
from mailer.extensions import db
from mailer.journal import enqueue_digest
from mailer.models import DigestStatus, Subscriber, WebhookDelivery
from mailer.sending import Sender, claim_batch
from mailer.subscribers import ConsentContext, confirm, erase, subscribe, unsubscribe
from mailer.webhooks import WebhookEvent, create_endpoint, deliver_due, emit
from tests.conftest import csrf_token_from
from tests.factories import add_digest, add_subscribers
from tests.smtp_server import ScriptedSMTPServer
from tests.webhook_receiver import Answer, WebhookReceiver

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver().start()
    yield server
    server.stop()


def _journal() -> list[tuple[int, str, dict[str, object]]]:
    """(endpoint, event type, data) of every journaled delivery, in order."""
    db.session.rollback()
    rows = db.session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id))
    return [(row.endpoint_id, row.event, json.loads(row.payload)["data"]) for row in rows]


def test_each_step_of_a_subscribers_life_goes_to_the_endpoints_that_want_it(app: Flask) -> None:
    with app.app_context():
        everything = create_endpoint("https://cms.example.org/hook", list(WebhookEvent), "", NOW)
        confirmations = create_endpoint(
            "http://10.0.0.5:8080/in", [WebhookEvent.CONFIRMED], "", NOW
        )
        subscribe("reader@example.org", ["digest"], ConsentContext(), NOW)
        reader = db.session.scalars(select(Subscriber)).one()
        confirm(reader, ConsentContext(), NOW)
        unsubscribe(reader, NOW, None)
        subscribe("reader@example.org", ["digest"], ConsentContext(), NOW)  # coming back
        db.session.commit()
        about = {"subscriber": {"id": reader.id, "email": "reader@example.org"}}
        assert _journal() == [
            (everything.id, "subscriber.subscribed", about),
            (everything.id, "subscriber.confirmed", about),
            (confirmations.id, "subscriber.confirmed", about),
            (everything.id, "subscriber.unsubscribed", about),
            (everything.id, "subscriber.subscribed", about),
        ]
        rows = db.session.scalars(select(WebhookDelivery)).all()
        confirmed = [row for row in rows if row.event == "subscriber.confirmed"]
        # One event, one webhook-id, whichever endpoint receives it.
        assert confirmed[0].message_id == confirmed[1].message_id
        assert len({row.message_id for row in rows}) == 4


def test_an_event_of_a_change_rolled_back_is_not_journaled(app: Flask) -> None:
    with app.app_context():
        create_endpoint("https://cms.example.org/hook", list(WebhookEvent), "", NOW)
        db.session.commit()
        subscribe("reader@example.org", ["digest"], ConsentContext(), NOW)
        db.session.rollback()
        assert _journal() == []


def test_the_request_that_emits_does_not_wait_on_the_receiver(
    app: Flask, client: FlaskClient, receiver: WebhookReceiver
) -> None:
    receiver.default = Answer(200, b"slow", delay=5.0)
    with app.app_context():
        create_endpoint(receiver.url, [WebhookEvent.SUBSCRIBED], "", NOW)
        db.session.commit()
    token = csrf_token_from(client.get("/subscribe").get_data(as_text=True))
    data = {"csrf_token": token, "email": "reader@example.org", "topics": ["digest"]}
    started = time.monotonic()
    response = client.post("/subscribe", data=data)
    assert response.status_code == 303
    assert time.monotonic() - started < 2.0
    # The request only journaled the event: nothing reached the receiver.
    assert receiver.received == []
    with app.app_context():
        [(_, event, data_sent)] = _journal()
        assert event == "subscriber.subscribed"
        assert data_sent["subscriber"]["email"] == "reader@example.org"  # type: ignore[index]
        row = db.session.scalars(select(WebhookDelivery)).one()
        assert (row.status, row.attempts) == ("queued", 0)


def test_a_hard_bounce_and_the_finished_digest_are_events(
    app: Flask, smtp_server: ScriptedSMTPServer
) -> None:
    smtp_server.answer("reader00001@example.org", "550 5.1.1 no such user")
    with app.app_context():
        endpoint = create_endpoint("https://cms.example.org/hook", list(WebhookEvent), "", NOW)
        ids = add_subscribers(3, now=NOW)
        digest_id = add_digest("March", now=NOW, status=DigestStatus.SENDING)
        enqueue_digest(digest_id, NOW)
        db.session.commit()
        sender = Sender("w", backend_from_url(smtp_server.url), lambda: NOW)
        stats = sender.send_batch(claim_batch("w", NOW, 50, 60))
        assert (stats.sent, stats.failed) == (2, 1)
        assert finish_digests(NOW) == [digest_id]
        bounce = {
            "subscriber": {"id": ids[1], "email": "reader00001@example.org"},
            "reason": "550 5.1.1 no such user",
        }
        sent = {
            "digest": {
                "id": digest_id,
                "subject": "March",
                "counts": {"queued": 0, "claimed": 0, "sent": 2, "failed": 1, "skipped": 0},
            }
        }
        assert _journal() == [
            (endpoint.id, "subscriber.bounced", bounce),
            (endpoint.id, "digest.sent", sent),
        ]


def test_erasure_takes_the_address_out_of_every_payload(
    app: Flask, receiver: WebhookReceiver
) -> None:
    with app.app_context():
        endpoint = create_endpoint(receiver.url, list(WebhookEvent), "", NOW)
        subscribe("reader@example.org", ["digest"], ConsentContext(), NOW)
        db.session.commit()
        reader = db.session.scalars(select(Subscriber)).one()
        reader_id = reader.id
        confirm(reader, ConsentContext(), NOW)
        db.session.commit()
        # The first event went out with the address; the second is still queued.
        db.session.execute(
            WebhookDelivery.__table__.update()
            .where(WebhookDelivery.event == "subscriber.confirmed")
            .values(next_attempt_at=datetime(2027, 1, 1, tzinfo=UTC))
        )
        db.session.commit()
        assert deliver_due(NOW).sent == 1
        erase(reader, NOW)
        db.session.commit()
        erased = {"subscriber": {"id": reader_id, "erased": True}}
        assert _journal() == [
            (endpoint.id, "subscriber.subscribed", erased),
            (endpoint.id, "subscriber.confirmed", erased),
        ]
        rows = db.session.scalars(select(WebhookDelivery)).all()
        assert all(row.response_excerpt == "" for row in rows)
        assert deliver_due(datetime(2027, 1, 1, tzinfo=UTC)).sent == 1
    assert b"reader@example.org" not in receiver.received[1].body


def test_nothing_emits_complaints_yet(app: Flask) -> None:
    # Named now, so endpoints can subscribe; complaint processing will emit it.
    with app.app_context():
        endpoint = create_endpoint("https://x.example.org/", [WebhookEvent.COMPLAINED], "", NOW)
        assert emit(WebhookEvent.COMPLAINED, {"subscriber": {"id": 1}}, NOW) == 1
        assert endpoint.events == ["subscriber.complained"]
