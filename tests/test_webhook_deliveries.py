"""Webhook deliveries reach a real receiver signed by Standard Webhooks, retried, bounded."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient
from standardwebhooks import Webhook

from mailer.extensions import db
from mailer.models import (
    Subscriber,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
    utcnow,
)
from mailer.subscribers import ConsentContext, confirm, subscribe
from mailer.webhooks import (
    EXCERPT_BYTES,
    WebhookEvent,
    create_endpoint,
    deliver_due,
    emit,
    send_test_event,
    set_enabled,
)
from tests.factories import Workers, wait_until
from tests.webhook_receiver import Answer, WebhookReceiver

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver().start()
    yield server
    server.stop()


def _endpoint(url: str, *events: WebhookEvent) -> tuple[int, str]:
    endpoint = create_endpoint(url, events or list(WebhookEvent), "", NOW)
    db.session.commit()
    return endpoint.id, endpoint.secret


def _row() -> WebhookDelivery:
    db.session.rollback()
    rows = db.session.query(WebhookDelivery).all()
    assert len(rows) == 1
    return rows[0]


def test_a_receiver_verifies_the_signature_with_the_reference_library(
    app: Flask, receiver: WebhookReceiver
) -> None:
    with app.app_context(), time_machine.travel(NOW, tick=True):
        _, secret = _endpoint(receiver.url, WebhookEvent.CONFIRMED)
        subscribe("reader@example.org", ["digest"], ConsentContext(), NOW)
        db.session.commit()
        # subscribed is not one of this endpoint's events
        assert db.session.query(WebhookDelivery).count() == 0
        reader = db.session.query(Subscriber).one()
        confirm(reader, ConsentContext(), NOW)
        db.session.commit()
        stats = deliver_due(NOW)
        assert (stats.sent, stats.retried, stats.failed) == (1, 0, 0)
        [request] = receiver.received
        # The receiver's check, as a receiver would run it: the scheme's reference library.
        payload = Webhook(secret).verify(request.body, request.headers)
        assert payload == {
            "type": "subscriber.confirmed",
            "timestamp": "2026-03-02T09:00:00Z",
            "data": {"subscriber": {"id": reader.id, "email": "reader@example.org"}},
        }
        assert request.path == "/hooks"
        assert request.headers["content-type"] == "application/json"
        assert request.headers["webhook-timestamp"] == str(int(NOW.timestamp()))
        assert request.headers["webhook-id"].startswith("msg_")
        # A wrong secret does not verify.
        with pytest.raises(Exception, match="No matching signature"):
            Webhook("whsec_" + "A" * 32).verify(request.body, request.headers)
        row = _row()
        assert (row.status, row.attempts, row.response_status) == ("sent", 1, 200)
        assert row.response_excerpt == "ok" and row.sent_at == NOW
        assert row.message_id == request.headers["webhook-id"]


def test_a_failed_attempt_is_retried_after_a_back_off_with_the_same_id(
    app: Flask, receiver: WebhookReceiver
) -> None:
    app.config["MAILER_WEBHOOK_RETRY_DELAY"] = 60.0
    receiver.answer(Answer(500, b"database down"), Answer(200, b"thanks"))
    with app.app_context():
        _endpoint(receiver.url)
        emit(WebhookEvent.DIGEST_SENT, {"digest": {"id": 1}}, NOW)
        db.session.commit()
        assert deliver_due(NOW).retried == 1
        row = _row()
        assert (row.status, row.attempts, row.response_status) == ("queued", 1, 500)
        assert (row.response_excerpt, row.last_error) == ("database down", "HTTP 500")
        # Back-off with jitter: between half and all of the first delay.
        assert NOW + timedelta(seconds=30) <= row.next_attempt_at <= NOW + timedelta(seconds=60)
        retry_at = row.next_attempt_at
        assert deliver_due(retry_at - timedelta(seconds=1)).attempted == 0
        assert deliver_due(retry_at).sent == 1
        row = _row()
        assert (row.status, row.attempts, row.response_status) == ("sent", 2, 200)
        assert (row.response_excerpt, row.last_error, row.sent_at) == ("thanks", "", retry_at)
    first, second = receiver.received
    assert first.body == second.body
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    # Each attempt is signed as of its own time.
    assert first.headers["webhook-timestamp"] != second.headers["webhook-timestamp"]


def test_past_the_retry_deadline_it_gives_up_and_is_shown_failed(
    app: Flask, admin_client: FlaskClient, receiver: WebhookReceiver
) -> None:
    app.config["MAILER_WEBHOOK_RETRY_DEADLINE"] = 3600
    receiver.default = Answer(503, b"maintenance")
    with app.app_context():
        endpoint_id, _ = _endpoint(receiver.url)
        emit(WebhookEvent.DIGEST_SENT, {"digest": {"id": 1}}, NOW)
        db.session.commit()
        assert deliver_due(NOW).retried == 1
        assert deliver_due(NOW + timedelta(hours=1)).failed == 1
        row = _row()
        assert (row.status, row.attempts) == ("failed", 2)
        assert row.last_error == "gave up: HTTP 503"
        assert deliver_due(NOW + timedelta(days=1)).attempted == 0
    page = admin_client.get(f"/admin/webhooks/{endpoint_id}").get_data(as_text=True)
    assert "status-failed" in page and "gave up: HTTP 503" in page
    assert "<strong>503</strong>" in page and "maintenance" in page


def test_a_slow_receiver_times_out_and_is_tried_again_later(
    app: Flask, receiver: WebhookReceiver
) -> None:
    app.config["MAILER_WEBHOOK_TIMEOUT"] = 0.5
    receiver.answer(Answer(200, b"late", delay=3.0))
    with app.app_context():
        _endpoint(receiver.url)
        emit(WebhookEvent.DIGEST_SENT, {"digest": {"id": 1}}, NOW)
        db.session.commit()
        started = time.monotonic()
        assert deliver_due(NOW).retried == 1
        assert time.monotonic() - started < 2.5
        row = _row()
        assert (row.status, row.response_status) == ("queued", None)
        assert row.last_error == "no answer within 0.5 s"


def test_a_redirect_is_not_followed(app: Flask, receiver: WebhookReceiver) -> None:
    elsewhere = receiver.url.replace("/hooks", "/elsewhere")
    receiver.answer(Answer(302, b"", headers={"location": elsewhere}))
    with app.app_context():
        _endpoint(receiver.url)
        emit(WebhookEvent.DIGEST_SENT, {"digest": {"id": 1}}, NOW)
        db.session.commit()
        assert deliver_due(NOW).retried == 1
        row = _row()
        assert row.response_status == 302
        assert row.last_error == f"HTTP 302: redirect to {elsewhere} not followed"
    assert [r.path for r in receiver.received] == ["/hooks"]


def test_only_the_start_of_a_long_answer_is_read(app: Flask, receiver: WebhookReceiver) -> None:
    receiver.answer(Answer(200, b"x" * 1_000_000))
    with app.app_context():
        _endpoint(receiver.url)
        emit(WebhookEvent.DIGEST_SENT, {"digest": {"id": 1}}, NOW)
        db.session.commit()
        assert deliver_due(NOW).sent == 1
        assert _row().response_excerpt == "x" * EXCERPT_BYTES


def test_an_unreachable_receiver_is_an_error_to_retry(app: Flask) -> None:
    with app.app_context():
        _endpoint("http://127.0.0.1:9/nothing-listens")
        emit(WebhookEvent.DIGEST_SENT, {"digest": {"id": 1}}, NOW)
        db.session.commit()
        assert deliver_due(NOW).retried == 1
        row = _row()
        assert row.status == "queued" and row.response_status is None
        assert row.last_error.startswith("ConnectError")


def test_a_disabled_endpoint_is_sent_nothing(app: Flask, receiver: WebhookReceiver) -> None:
    with app.app_context():
        endpoint_id, _ = _endpoint(receiver.url)
        emit(WebhookEvent.DIGEST_SENT, {"digest": {"id": 1}}, NOW)
        endpoint = db.session.get(WebhookEndpoint, endpoint_id)
        assert endpoint is not None
        assert set_enabled(endpoint, False) == 1
        assert emit(WebhookEvent.DIGEST_SENT, {"digest": {"id": 2}}, NOW) == 0
        db.session.commit()
        assert deliver_due(NOW).attempted == 0
        row = _row()
        assert (row.status, row.last_error) == ("skipped", "endpoint disabled")
    assert receiver.received == []


def test_the_worker_sends_a_test_event_to_a_real_receiver(
    app: Flask, workers: Workers, receiver: WebhookReceiver
) -> None:
    with app.app_context():
        endpoint_id, secret = _endpoint(receiver.url, WebhookEvent.CONFIRMED)
        endpoint = db.session.get(WebhookEndpoint, endpoint_id)
        assert endpoint is not None
        # Queued as of now: the worker signs with the time it sends, which the verifier checks.
        send_test_event(endpoint, utcnow())
        db.session.commit()
    workers.start("worker")
    wait_until(lambda: len(receiver.received) == 1, 30, "the worker's webhook")
    payload = Webhook(secret).verify(receiver.received[0].body, receiver.received[0].headers)
    assert payload["type"] == "webhook.test"
    with app.app_context():
        wait_until(lambda: _row().status == WebhookDeliveryStatus.SENT, 10, "the journal")
    assert json.loads(receiver.received[0].body)["data"]["endpoint"] == {"id": endpoint_id}
