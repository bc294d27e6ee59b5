"""Outgoing webhooks: endpoints, events journaled with the change, signed deliveries and retries.

An event is only journaled (one row per endpoint that wants it) in the transaction of the change
it reports, so no request ever waits on a receiver and no event is sent for a change that was
rolled back. The worker posts due rows, signed by the Standard Webhooks scheme
(https://www.standardwebhooks.com): headers ``webhook-id`` (one per event, the same on every
attempt), ``webhook-timestamp`` and ``webhook-signature`` (``v1,`` and the base64 HMAC-SHA256 of
"id.timestamp.body" under the endpoint's ``whsec_`` secret). A 2xx answer is a success; anything
else (a redirect too: none is followed) is retried with back-off until the retry deadline.
"""

from __future__ import annotations

import base64
import enum
import json
import logging
import math
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from apscheduler.schedulers.base import BaseScheduler
from flask import Flask, current_app
from sqlalchemy import ColumnElement, Select, and_, delete, or_, select, update
from standardwebhooks import Webhook

from .extensions import db
from .journal import digest_counts, retry_delay
from .models import (
    Digest,
    Subscriber,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
    utcnow,
)

log = logging.getLogger("mailer.webhooks")


class WebhookEvent(enum.StrEnum):
    """What an endpoint can subscribe to; the value is the payload's ``type``."""

    SUBSCRIBED = "subscriber.subscribed"
    CONFIRMED = "subscriber.confirmed"
    UNSUBSCRIBED = "subscriber.unsubscribed"
    BOUNCED = "subscriber.bounced"
    # Nothing emits it yet: complaints arrive with bounce processing, which is still to come.
    COMPLAINED = "subscriber.complained"
    DIGEST_SENT = "digest.sent"


# Sent on an admin's request to one endpoint, whatever it subscribed to.
TEST_EVENT = "webhook.test"

URL_MAX = 2000
DESCRIPTION_MAX = 200
# How much of a receiver's answer is read and kept to show.
EXCERPT_BYTES = 2048
# A batch is signed with the time it was claimed, and receivers refuse a timestamp more than
# five minutes off: a batch is sized to be sent well within that even if every receiver is slow.
BATCH_SECONDS = 120.0
LEASE_SECONDS = 2 * BATCH_SECONDS + 60.0
# The worker's job: how often it looks for due deliveries, and how long one run may send.
JOB_SECONDS = 2.0
JOB_BUDGET = 60.0


class InvalidEndpoint(ValueError):
    """An endpoint cannot be registered as given; ``errors`` says what is wrong with each field."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))
        self.errors = errors


class EndpointDisabled(Exception):
    """A disabled endpoint is sent nothing, not even a test event."""


# --- endpoints ----------------------------------------------------------------------------------


def check_url(raw: str) -> str:
    """The URL, if it is an absolute http(s) URL without credentials; else InvalidEndpoint."""
    url = raw.strip()
    if not url:
        raise InvalidEndpoint({"url": "is required"})
    if len(url) > URL_MAX:
        raise InvalidEndpoint({"url": f"is too long (at most {URL_MAX} characters)"})
    if any(ord(c) <= 32 or c == "\x7f" for c in url):
        raise InvalidEndpoint({"url": "cannot contain spaces or control characters"})
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (reading it checks it)
        httpx.URL(url)
    except ValueError as exc:
        raise InvalidEndpoint({"url": f"is not a valid URL ({exc})"}) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidEndpoint({"url": "must be an http:// or https:// URL with a host"})
    if parts.username is not None or parts.password is not None:
        # They would be kept in the clear and shown on the admin page: the signature
        # is what authenticates us to the receiver.
        raise InvalidEndpoint({"url": "must not contain a user name or password"})
    return url


def check_events(raw: Iterable[str]) -> list[str]:
    """The chosen event names, in the list's order; else InvalidEndpoint."""
    chosen = set(raw)
    unknown = chosen - {str(event) for event in WebhookEvent}
    if unknown:
        raise InvalidEndpoint({"events": f"has unknown names: {', '.join(sorted(unknown))}"})
    if not chosen:
        raise InvalidEndpoint({"events": "must have at least one event chosen"})
    return [str(event) for event in WebhookEvent if event in chosen]


def new_secret() -> str:
    """A fresh signing secret in the scheme's form: ``whsec_`` and 24 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def create_endpoint(
    url: str, events: Iterable[str], description: str, now: datetime
) -> WebhookEndpoint:
    """Register a URL for some events, with a new secret (the caller shows it once)."""
    errors: dict[str, str] = {}
    checked_url, checked_events = "", []
    try:
        checked_url = check_url(url)
    except InvalidEndpoint as exc:
        errors |= exc.errors
    try:
        checked_events = check_events(events)
    except InvalidEndpoint as exc:
        errors |= exc.errors
    if len(description.strip()) > DESCRIPTION_MAX:
        errors["description"] = f"is too long (at most {DESCRIPTION_MAX} characters)"
    if errors:
        raise InvalidEndpoint(errors)
    endpoint = WebhookEndpoint(
        url=checked_url,
        events=checked_events,
        description=description.strip(),
        secret=new_secret(),
        enabled=True,
        created_at=now,
    )
    db.session.add(endpoint)
    db.session.flush()
    log.info("webhook endpoint %s registered for %s", endpoint.id, ", ".join(checked_events))
    return endpoint


def list_endpoints() -> list[WebhookEndpoint]:
    """Every endpoint, oldest first."""
    return list(db.session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)))


def recent_deliveries(endpoint_id: int, limit: int = 50) -> list[WebhookDelivery]:
    """An endpoint's latest deliveries, newest first."""
    return list(
        db.session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == endpoint_id)
            .order_by(WebhookDelivery.id.desc())
            .limit(limit)
        )
    )


def set_enabled(endpoint: WebhookEndpoint, enabled: bool) -> int:
    """Enable or disable an endpoint; disabling skips what is queued for it (returned)."""
    endpoint.enabled = enabled
    if enabled:
        return 0
    result = db.session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.endpoint_id == endpoint.id,
            WebhookDelivery.status == WebhookDeliveryStatus.QUEUED,
        )
        .values(status=WebhookDeliveryStatus.SKIPPED, last_error="endpoint disabled")
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def delete_endpoint(endpoint: WebhookEndpoint) -> None:
    """Remove an endpoint and its deliveries (rows first: SQLite does not enforce the cascade)."""
    db.session.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id))
    db.session.delete(endpoint)


def send_test_event(endpoint: WebhookEndpoint, now: datetime) -> WebhookDelivery:
    """Journal a test event to this endpoint alone; the worker sends it like any other."""
    if not endpoint.enabled:
        raise EndpointDisabled("This endpoint is disabled: enable it to send it a test event.")
    data = {"endpoint": {"id": endpoint.id}, "message": "A test event from the newsletter."}
    payload = _body(TEST_EVENT, data, now)
    delivery = _journal(endpoint.id, TEST_EVENT, payload, new_message_id(), now)
    db.session.add(delivery)
    db.session.flush()
    return delivery


# --- events -------------------------------------------------------------------------------------


def new_message_id() -> str:
    """A webhook-id: unique per event, kept by every endpoint's row and every attempt."""
    return "msg_" + secrets.token_urlsafe(18)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _body(event: str, data: dict[str, Any], now: datetime) -> str:
    """The JSON body: the event's type, when it happened, and its data."""
    return json.dumps({"type": event, "timestamp": _iso(now), "data": data})


def _journal(
    endpoint_id: int,
    event: str,
    payload: str,
    message_id: str,
    now: datetime,
    subscriber_id: int | None = None,
) -> WebhookDelivery:
    return WebhookDelivery(
        endpoint_id=endpoint_id,
        event=event,
        message_id=message_id,
        payload=payload,
        subscriber_id=subscriber_id,
        status=WebhookDeliveryStatus.QUEUED,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )


def emit(
    event: WebhookEvent, data: dict[str, Any], now: datetime, *, subscriber_id: int | None = None
) -> int:
    """Journal the event for every enabled endpoint that wants it, in the caller's transaction
    (never a request to a receiver); return how many rows. ``subscriber_id`` names whom the data
    is about, so erasing them can take their address out of it."""
    endpoints = db.session.execute(
        select(WebhookEndpoint.id, WebhookEndpoint.events).where(WebhookEndpoint.enabled.is_(True))
    ).all()
    targets = [endpoint_id for endpoint_id, events in endpoints if str(event) in events]
    if not targets:
        return 0
    payload, message_id = _body(event, data, now), new_message_id()
    db.session.add_all(
        _journal(endpoint_id, event, payload, message_id, now, subscriber_id)
        for endpoint_id in targets
    )
    return len(targets)


def emit_subscriber(event: WebhookEvent, subscriber: Subscriber, now: datetime) -> int:
    """Emit an event about a subscriber: its id and address (personal data)."""
    data = {"subscriber": {"id": subscriber.id, "email": subscriber.email}}
    return emit(event, data, now, subscriber_id=subscriber.id)


def emit_bounce(subscriber_id: int | None, address: str, reason: str, now: datetime) -> int:
    """Emit ``subscriber.bounced``: a hard bounce put the address on the suppression list."""
    data = {"subscriber": {"id": subscriber_id, "email": address}, "reason": reason[:1000]}
    return emit(WebhookEvent.BOUNCED, data, now, subscriber_id=subscriber_id)


def emit_complaint(subscriber_id: int | None, address: str, reason: str, now: datetime) -> int:
    """Emit ``subscriber.complained``: a spam complaint unsubscribed and suppressed the address."""
    data = {"subscriber": {"id": subscriber_id, "email": address}, "reason": reason[:1000]}
    return emit(WebhookEvent.COMPLAINED, data, now, subscriber_id=subscriber_id)


def emit_digest_sent(digest_id: int, now: datetime) -> int:
    """Emit ``digest.sent`` with the digest's subject and its deliveries' counts."""
    digest = db.session.get(Digest, digest_id)
    data = {
        "digest": {
            "id": digest_id,
            "subject": digest.subject if digest is not None else "",
            "counts": digest_counts(digest_id),
        }
    }
    return emit(WebhookEvent.DIGEST_SENT, data, now)


def forget_subscribers(ids: Iterable[int] | Select[Any]) -> int:
    """Take these subscribers' addresses out of every journaled payload (sent or not), for an
    erasure or a purge; the id stays, so receivers can erase their copy. Return how many."""
    rows = db.session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.subscriber_id.in_(ids))
    ).all()
    for row in rows:
        body = json.loads(row.payload)
        subscriber = body.get("data", {}).get("subscriber")
        if isinstance(subscriber, dict):
            subscriber.pop("email", None)
            subscriber["erased"] = True
        row.payload = json.dumps(body)
        # A receiver may have echoed the address back.
        row.response_excerpt = ""
        row.subscriber_id = None
    return len(rows)


# --- sending ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """What one POST got: a status code (None without an answer), the answer's start, an error."""

    status_code: int | None
    excerpt: str
    error: str

    @property
    def succeeded(self) -> bool:
        """A 2xx answer."""
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass
class DeliveryStats:
    """What one deliver_due did."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    ids: list[int] = field(default_factory=list)

    @property
    def attempted(self) -> int:
        """How many rows were posted."""
        return self.sent + self.retried + self.failed


def signed_headers(secret: str, message_id: str, payload: str, at: datetime) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt, signed with the reference library."""
    return {
        "content-type": "application/json",
        "user-agent": "mailer-webhooks/1",
        "webhook-id": message_id,
        "webhook-timestamp": str(math.floor(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, at, payload),
    }


def _excerpt(response: httpx.Response, deadline: float) -> str:
    """The start of the answer's body: at most EXCERPT_BYTES, read until the deadline."""
    kept = b""
    for chunk in response.iter_bytes(1024):
        kept += chunk
        if len(kept) >= EXCERPT_BYTES or time.monotonic() > deadline:
            break
    return kept[:EXCERPT_BYTES].decode("utf-8", errors="replace")


def post(
    client: httpx.Client, url: str, secret: str, message_id: str, payload: str, at: datetime
) -> Attempt:
    """POST one signed delivery; never raises for the receiver's failures."""
    timeout = client.timeout.read or 10.0
    headers = signed_headers(secret, message_id, payload, at)
    try:
        with client.stream("POST", url, content=payload.encode(), headers=headers) as response:
            excerpt = _excerpt(response, time.monotonic() + timeout)
    except httpx.TimeoutException:
        return Attempt(None, "", f"no answer within {timeout:g} s")
    except httpx.HTTPError as exc:
        return Attempt(None, "", f"{type(exc).__name__}: {exc}"[:1000])
    code = response.status_code
    if 200 <= code < 300:
        return Attempt(code, excerpt, "")
    if response.is_redirect:
        location = response.headers.get("location", "")[:500]
        return Attempt(code, excerpt, f"HTTP {code}: redirect to {location} not followed")
    return Attempt(code, excerpt, f"HTTP {code}")


def _due(now: datetime) -> ColumnElement[bool]:
    """Queued rows whose time has come, and claimed ones whose worker died (lease ran out)."""
    return and_(
        or_(
            and_(
                WebhookDelivery.status == WebhookDeliveryStatus.QUEUED,
                WebhookDelivery.next_attempt_at <= now,
            ),
            and_(
                WebhookDelivery.status == WebhookDeliveryStatus.CLAIMED,
                WebhookDelivery.lease_until < now,
            ),
        ),
        WebhookDelivery.endpoint_id.in_(
            select(WebhookEndpoint.id).where(WebhookEndpoint.enabled.is_(True))
        ),
    )


def claim_due(now: datetime, limit: int) -> list[int]:
    """Lease up to ``limit`` due rows and count the attempt; safe with several workers (FOR
    UPDATE SKIP LOCKED on PostgreSQL, the repeated condition as compare-and-set on SQLite)."""
    wanted = db.session.scalars(
        select(WebhookDelivery.id)
        .where(_due(now))
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not wanted:
        db.session.commit()
        return []
    leased = db.session.scalars(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(wanted), _due(now))
        .values(
            status=WebhookDeliveryStatus.CLAIMED,
            lease_until=now + timedelta(seconds=LEASE_SECONDS),
            attempts=WebhookDelivery.attempts + 1,
        )
        .returning(WebhookDelivery.id)
        .execution_options(synchronize_session=False)
    ).all()
    db.session.commit()
    return sorted(leased)


def _record(delivery: WebhookDelivery, attempt: Attempt, now: datetime) -> WebhookDeliveryStatus:
    """Journal an attempt: sent, due again after a back-off, or failed past the deadline."""
    config = current_app.config
    delivery.last_attempt_at = now
    delivery.lease_until = None
    delivery.response_status = attempt.status_code
    delivery.response_excerpt = attempt.excerpt
    deadline = timedelta(seconds=int(config["MAILER_WEBHOOK_RETRY_DEADLINE"]))
    if attempt.succeeded:
        delivery.status, delivery.sent_at, delivery.last_error = WebhookDeliveryStatus.SENT, now, ""
    elif now - delivery.created_at >= deadline:
        delivery.status = WebhookDeliveryStatus.FAILED
        delivery.last_error = f"gave up: {attempt.error}"
    else:
        delay = retry_delay(delivery.attempts, float(config["MAILER_WEBHOOK_RETRY_DELAY"]))
        delivery.status = WebhookDeliveryStatus.QUEUED
        delivery.next_attempt_at = now + timedelta(seconds=delay)
        delivery.last_error = attempt.error
    return WebhookDeliveryStatus(delivery.status)


def deliver_due(now: datetime) -> DeliveryStats:
    """Claim a batch of due webhook deliveries, post each signed as of ``now``, journal each
    outcome in its own commit (no transaction is open while a receiver is waited for)."""
    timeout = float(current_app.config["MAILER_WEBHOOK_TIMEOUT"])
    stats = DeliveryStats()
    ids = claim_due(now, max(1, int(BATCH_SECONDS // timeout)))
    if not ids:
        return stats
    # The proxy settings of the environment apply (HTTPS_PROXY, NO_PROXY): an egress proxy is
    # where a site that wants to keep webhooks off internal addresses can enforce it.
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        for delivery_id in ids:
            row = db.session.execute(
                select(WebhookDelivery, WebhookEndpoint.url, WebhookEndpoint.secret)
                .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
                .where(WebhookDelivery.id == delivery_id)
            ).one_or_none()
            if row is None:  # its endpoint was deleted meanwhile
                continue
            url, secret = row.url, row.secret
            message_id, payload = row.WebhookDelivery.message_id, row.WebhookDelivery.payload
            db.session.commit()  # no transaction stays open while the receiver is waited for
            attempt = post(client, url, secret, message_id, payload, now)
            delivery = db.session.get(WebhookDelivery, delivery_id, populate_existing=True)
            if delivery is None:
                continue
            outcome = _record(delivery, attempt, now)
            db.session.commit()
            stats.ids.append(delivery_id)
            if outcome == WebhookDeliveryStatus.SENT:
                stats.sent += 1
            elif outcome == WebhookDeliveryStatus.FAILED:
                stats.failed += 1
                log.warning("webhook %s to %s: gave up (%s)", delivery_id, url, attempt.error)
            else:
                stats.retried += 1
    return stats


def run_due(app: Flask) -> None:
    """The worker's job: send due webhook deliveries, batch after batch, for up to JOB_BUDGET."""
    started = time.monotonic()
    with app.app_context():
        try:
            while time.monotonic() - started < JOB_BUDGET:
                if deliver_due(utcnow()).attempted == 0:
                    break
        finally:
            db.session.remove()


def add_worker_job(scheduler: BaseScheduler, app: Flask) -> None:
    """Give the worker its webhook job; it runs beside the mail tick, never holding it up."""
    scheduler.add_job(
        run_due,
        "interval",
        args=(app,),
        seconds=JOB_SECONDS,
        id="webhooks",
        max_instances=1,
        coalesce=True,
        next_run_time=datetime.now(UTC),
    )
