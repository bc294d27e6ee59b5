"""Bounces and complaints: the record of each, and the policy every report goes through."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import distinct, func, select

from . import webhooks
from .address_hash import normalise_address
from .extensions import db
from .models import (
    Bounce,
    BounceKind,
    ConsentAction,
    ConsentEvent,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Subscriber,
    SubscriberStatus,
    SuppressionReason,
)
from .subscribers import ConsentContext, find_subscriber, unsubscribe
from .suppressions import suppress

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
        suppress(bounce.address, SuppressionReason.HARD_BOUNCE, now, note=why)
        webhooks.emit_bounce(bounce.subscriber_id, bounce.address, bounce.diagnostic, now)
    elif bounce.kind == BounceKind.SOFT:
        score = soft_score(bounce.address, now)
        if score >= int(current_app.config["MAILER_BOUNCE_SOFT_SCORE"]):
            days = int(current_app.config["MAILER_BOUNCE_SOFT_DAYS"])
            note = f"{score} soft bounces within {days} days; last: {why}"
            suppress(bounce.address, SuppressionReason.SOFT_BOUNCES, now, note=note)
    elif bounce.kind == BounceKind.COMPLAINT:
        if subscriber is not None:
            _unsubscribe_for_complaint(subscriber, bounce, now)
        suppress(bounce.address, SuppressionReason.COMPLAINT, now, note=why)
        webhooks.emit_complaint(bounce.subscriber_id, bounce.address, bounce.diagnostic, now)


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


# --- counts -------------------------------------------------------------------------------------

# The bulk-sender thresholds (Gmail, Yahoo): above these a sender's mail starts to be refused.
BOUNCE_RATE_WARNING = 0.02
COMPLAINT_RATE_WARNING = 0.001


@dataclass(frozen=True)
class BounceStats:
    """A digest's bounces and complaints against what it sent."""

    digest_id: int
    sent: int
    bounces: int
    complaints: int

    @property
    def bounce_rate(self) -> float:
        return self.bounces / self.sent if self.sent else 0.0

    @property
    def complaint_rate(self) -> float:
        return self.complaints / self.sent if self.sent else 0.0

    @property
    def warnings(self) -> list[str]:
        """What is above the bulk-sender thresholds."""
        found = []
        if self.bounce_rate > BOUNCE_RATE_WARNING:
            found.append(f"bounce rate above {BOUNCE_RATE_WARNING:.0%}")
        if self.complaint_rate > COMPLAINT_RATE_WARNING:
            found.append(f"complaint rate above {COMPLAINT_RATE_WARNING:.1%}")
        return found


def bounce_stats(digest_ids: list[int]) -> dict[int, BounceStats]:
    """Bounces (hard or soft) and complaints per digest, each delivery counted once per kind."""
    if not digest_ids:
        return {}
    is_complaint = Bounce.kind == BounceKind.COMPLAINT
    rows = db.session.execute(
        select(Bounce.digest_id, is_complaint, func.count(distinct(Bounce.delivery_id)))
        .where(Bounce.digest_id.in_(digest_ids))
        .group_by(Bounce.digest_id, is_complaint)
    ).all()
    sent = dict(
        db.session.execute(
            select(Delivery.digest_id, func.count())
            .where(
                Delivery.digest_id.in_(digest_ids),
                Delivery.kind == DeliveryKind.DIGEST,
                Delivery.status.in_([DeliveryStatus.SENT, DeliveryStatus.FAILED]),
            )
            .group_by(Delivery.digest_id)
        ).all()
    )
    counts: dict[tuple[int, bool], int] = {(d, bool(c)): n for d, c, n in rows if d is not None}
    return {
        digest_id: BounceStats(
            digest_id,
            int(sent.get(digest_id, 0)),
            counts.get((digest_id, False), 0),
            counts.get((digest_id, True), 0),
        )
        for digest_id in digest_ids
    }
