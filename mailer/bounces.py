"""Bounces and complaints: the record of each, and the policy every report goes through."""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, select

from .extensions import db
from .models import (
    Bounce,
    BounceKind,
    ConsentAction,
    ConsentEvent,
    Delivery,
    Subscriber,
    SubscriberStatus,
    SuppressionReason,
)
from .sending import normalise_address
from .subscribers import ConsentContext, find_subscriber, suppress, unsubscribe

__all__ = ["BounceKind", "record_bounce"]

DIAGNOSTIC_MAX = 4000

# --- the policy ---------------------------------------------------------------------------------


def record_bounce(
    *,
    delivery_id: int | None = None,
    address: str | None = None,
    kind: BounceKind,
    diagnostic: str,
    when: datetime,
    source: str,
    report_id: int | None = None,
    status: str = "",
) -> Bounce | None:
    """Record a bounce or complaint for a delivery (or a bare address) and apply the policy.

    A hard bounce suppresses the address at once; soft bounces suppress it once
    MAILER_BOUNCE_SOFT_SCORE of them fall within MAILER_BOUNCE_SOFT_DAYS; a complaint
    unsubscribes (with a consent record) and suppresses. Returns the new record, or None when
    there is nobody to record it for or this report already named this address. The caller
    commits.
    """
    delivery = db.session.get(Delivery, delivery_id) if delivery_id is not None else None
    subscriber = None
    if delivery is not None and delivery.subscriber_id is not None:
        subscriber = db.session.get(Subscriber, delivery.subscriber_id)
    recipient = address or (delivery and delivery.to_address) or (subscriber and subscriber.email)
    if not recipient:
        return None
    normalised = normalise_address(recipient)[:254]
    if subscriber is None or subscriber.email != normalised:
        subscriber = find_subscriber(normalised)
    if report_id is not None and db.session.scalar(
        select(Bounce.id).where(Bounce.report_id == report_id, Bounce.address == normalised)
    ):
        return None
    bounce = Bounce(
        kind=kind,
        delivery_id=delivery.id if delivery is not None else None,
        digest_id=delivery.digest_id if delivery is not None else None,
        subscriber_id=subscriber.id if subscriber is not None else None,
        address=normalised,
        diagnostic=diagnostic[:DIAGNOSTIC_MAX],
        status=status[:20],
        source=source,
        received_at=when,
        report_id=report_id,
    )
    db.session.add(bounce)
    db.session.flush()
    _apply_policy(bounce, subscriber, when)
    return bounce


def _apply_policy(bounce: Bounce, subscriber: Subscriber | None, now: datetime) -> None:
    """Suppress (and for a complaint, unsubscribe) as the bounce's kind demands."""
    why = f"{bounce.source} {bounce.status} {bounce.diagnostic}".strip()[:500]
    if bounce.kind == BounceKind.HARD:
        suppress(bounce.address, SuppressionReason.HARD_BOUNCE, why, now)
    elif bounce.kind == BounceKind.SOFT:
        score = soft_score(bounce.address, now)
        if score >= int(current_app.config["MAILER_BOUNCE_SOFT_SCORE"]):
            days = int(current_app.config["MAILER_BOUNCE_SOFT_DAYS"])
            note = f"{score} soft bounces within {days} days; last: {why}"
            suppress(bounce.address, SuppressionReason.SOFT_BOUNCES, note, now)
    elif bounce.kind == BounceKind.COMPLAINT:
        if subscriber is not None:
            _unsubscribe_for_complaint(subscriber, bounce, now)
        suppress(bounce.address, SuppressionReason.COMPLAINT, why, now)


def soft_score(address: str, now: datetime) -> int:
    """How many soft bounces an address had within MAILER_BOUNCE_SOFT_DAYS up to now."""
    since = now - timedelta(days=int(current_app.config["MAILER_BOUNCE_SOFT_DAYS"]))
    count = db.session.scalar(
        select(func.count())
        .select_from(Bounce)
        .where(
            Bounce.address == address,
            Bounce.kind == BounceKind.SOFT,
            Bounce.received_at > since,
            Bounce.received_at <= now,
        )
    )
    return int(count or 0)


def _unsubscribe_for_complaint(subscriber: Subscriber, bounce: Bounce, now: datetime) -> None:
    """Unsubscribe a complainer, and say so in the consent record even if already out."""
    consent = ConsentContext(
        form="complaint",
        consent_text=f"reported as spam ({bounce.source}, bounce {bounce.id})",
    )
    if subscriber.status != SubscriberStatus.UNSUBSCRIBED:
        unsubscribe(subscriber, now, consent)
        return
    db.session.add(
        ConsentEvent(
            subscriber_id=subscriber.id,
            action=ConsentAction.UNSUBSCRIBE,
            at=now,
            form=consent.form,
            consent_text=consent.consent_text,
            details={"already_unsubscribed": True},
        )
    )
