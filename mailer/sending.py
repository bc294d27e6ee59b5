"""The delivery journal: enqueue messages, and skip what must no longer be sent."""

from __future__ import annotations

from datetime import datetime

from flask import Flask
from sqlalchemy import update

from .extensions import db
from .models import Delivery, DeliveryKind, DeliveryStatus, Subscriber


def queue_message(
    kind: DeliveryKind,
    subscriber: Subscriber | None,
    now: datetime,
    *,
    to_address: str | None = None,
    digest_id: int | None = None,
) -> Delivery:
    """Journal one message for the worker to send; the caller commits with its own changes."""
    delivery = Delivery(
        kind=kind,
        subscriber_id=subscriber.id if subscriber is not None else None,
        to_address=to_address,
        digest_id=digest_id,
        next_attempt_at=now,
        created_at=now,
    )
    db.session.add(delivery)
    return delivery


def skip_pending_for(subscriber_id: int, reason: str) -> int:
    """Mark every not-yet-sent delivery to a subscriber as skipped; return how many."""
    result = db.session.execute(
        update(Delivery)
        .where(
            Delivery.subscriber_id == subscriber_id,
            Delivery.status == DeliveryStatus.QUEUED,
        )
        .values(status=DeliveryStatus.SKIPPED, last_error=reason)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def init_app(app: Flask) -> None:
    """Nothing to register yet: the worker commands come with the sending engine."""
