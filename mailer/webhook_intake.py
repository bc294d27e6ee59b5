"""POST /webhooks/<provider>: bounces and complaints from sending services, into record_bounce.

Every refused request (no valid signature, stale, replayed, not ours) is answered 401/403 and
kept in webhook_refusals; an accepted one records each of its events once, then answers 200.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime

from flask import Blueprint, Flask, current_app, request
from flask.typing import ResponseReturnValue
from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite

from .bounces import BounceKind, record_bounce
from .extensions import csrf, db
from .models import Delivery, WebhookEventSeen, WebhookRefusal, utcnow
from .provider_events import (
    READERS,
    Forbidden,
    Malformed,
    ProviderEvent,
    ProviderSettings,
    ProviderUnreachable,
    Reading,
    Refused,
    WebhookRequest,
)
from .security import unstorable
from .verp import delivery_of_verp

log = logging.getLogger(__name__)

bp = Blueprint("webhook_intake", __name__)

# Providers send batches of at most a few hundred kilobytes; anything larger is not theirs.
MAX_BODY = 1024 * 1024
EXCERPT_CHARS = 500
REASON_CHARS = 200
# Our Message-IDs carry the delivery id: make_msgid(idstring=f"d{id}") (see emails.message_id_for).
_DELIVERY_IN_MESSAGE_ID = re.compile(r"\.d(\d{1,18})@")
MAX_ROW_ID = 2**31 - 1  # deliveries.id is a 32-bit integer; PostgreSQL refuses to look up more


class BodyTooLarge(Refused):
    """More than any provider sends in one request."""

    status = 413


def take_in(
    provider: str, incoming: WebhookRequest, settings: ProviderSettings, now: datetime
) -> Reading:
    """Verify a provider's request and record each new bounce or complaint in it.

    Raises Refused when the request is not genuine, is stale, or every id in it was taken in
    before (a replay). The caller commits.
    """
    reading = READERS[provider](incoming, settings, now)
    texts = [*reading.replay_keys]
    for event in reading.events:
        texts += (event.address, event.diagnostic, event.status, event.message_id)
    for text in texts:
        problem = unstorable(text)
        if problem:
            raise Malformed(problem)
    new_keys = {
        key for key in dict.fromkeys(reading.replay_keys) if _first_time(provider, key, now)
    }
    if reading.replay_keys and not new_keys:
        raise Forbidden(f"replayed: {', '.join(reading.replay_keys)[:150]}")
    for event in reading.events:
        if event.replay_key in new_keys and "@" in event.address:
            record_bounce(
                delivery_id=_delivery_of(event),
                address=event.address,
                kind=BounceKind(event.kind),
                diagnostic=event.diagnostic,
                when=event.when,
                source=provider,
                status=event.status,
            )
    return reading


def _first_time(provider: str, key: str, now: datetime) -> bool:
    """Note an event id as seen; False if it was seen before (also by a concurrent request)."""
    table = WebhookEventSeen.__table__
    assert isinstance(table, Table)
    dialect = postgresql if db.engine.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(table)
        .values(provider=provider, event_key=key[:255], seen_at=now)
        .on_conflict_do_nothing()
        .returning(table.c.id)
    )
    # A conflict inserts nothing and so returns no row.
    return db.session.execute(statement).scalar() is not None


def _delivery_of(event: ProviderEvent) -> int | None:
    """Our delivery an event is about: by its VERP return address, else by its Message-ID."""
    if event.envelope_sender:
        delivery_id = delivery_of_verp(event.envelope_sender)
        if delivery_id is not None:
            return delivery_id
    match = _DELIVERY_IN_MESSAGE_ID.search(event.message_id)
    if match is None or int(match[1]) > MAX_ROW_ID:
        return None
    delivery = db.session.get(Delivery, int(match[1]))
    return delivery.id if delivery is not None and delivery.message_id == event.message_id else None


def record_refusal(
    provider: str, refused: Refused, body: bytes, remote_addr: str, now: datetime
) -> None:
    """Keep a refused request for the admins: who sent it, why it was refused, how it began."""
    excerpt = body[: EXCERPT_CHARS * 4].decode("utf-8", "replace")[:EXCERPT_CHARS]
    db.session.add(
        WebhookRefusal(
            provider=provider,
            reason=refused.reason[:REASON_CHARS],
            status_code=refused.status,
            remote_addr=remote_addr[:64],
            body_excerpt=excerpt.replace("\x00", "\ufffd"),
            received_at=now,
        )
    )


@bp.post("/webhooks/<provider>")
def receive(provider: str) -> ResponseReturnValue:
    """Take in one provider webhook request."""
    settings = ProviderSettings.from_config(current_app.config)
    if provider not in READERS or not settings.configured(provider):
        return {"error": f"no webhook for {provider!r} here"}, 404
    now = utcnow()
    body = b""
    try:
        if (request.content_length or 0) > MAX_BODY:
            raise BodyTooLarge(f"body over {MAX_BODY} bytes")
        body = request.stream.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            raise BodyTooLarge(f"body over {MAX_BODY} bytes")
        headers = {name.lower(): value for name, value in request.headers.items()}
        reading = take_in(provider, WebhookRequest(body, headers), settings, now)
    except Refused as refused:
        db.session.rollback()
        record_refusal(provider, refused, body, request.remote_addr or "", now)
        db.session.commit()
        log.warning("webhook %s refused: %s", provider, refused.reason)
        answer = {"error": refused.reason}, refused.status
        if refused.status == 401 and provider == "postmark":
            return *answer, {"WWW-Authenticate": 'Basic realm="webhooks"'}
        return answer
    except ProviderUnreachable as exc:
        db.session.rollback()
        log.warning("webhook %s: %s", provider, exc)
        return {"error": str(exc)}, 502
    db.session.commit()
    if reading.note:
        log.info("webhook %s: %s", provider, reading.note)
    return {"accepted": len(reading.events)}, 200


def init_app(app: Flask) -> None:
    """Register the intake; providers sign their requests, so no CSRF token applies."""
    csrf.exempt(bp)
    app.register_blueprint(bp)
