"""Bounces and complaints: the VERP return address, and the policy every report goes through."""

from __future__ import annotations

import hashlib
import hmac
import re
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

__all__ = ["BounceKind", "delivery_of_verp", "record_bounce", "verp_address"]

DIAGNOSTIC_MAX = 4000
MAC_LENGTH = 16  # hex digits: 64 bits, far beyond guessing by mail

# bounces+<delivery id>-<mac>@domain: digits and lower-case hex only, as some relays fold case.
_VERP = re.compile(r"^(?P<local>.+)\+(?P<delivery>\d{1,18})-(?P<mac>[0-9a-f]+)$")


# --- VERP ---------------------------------------------------------------------------------------


def _mac(key: str, delivery_id: int) -> str:
    """The signature of a delivery id, with a key derived from the secret key for this use."""
    derived = hmac.new(key.encode(), b"mailer-verp-return-address", hashlib.sha256).digest()
    return hmac.new(derived, str(delivery_id).encode(), hashlib.sha256).hexdigest()[:MAC_LENGTH]


def bounce_address() -> tuple[str, str] | None:
    """MAILER_BOUNCE_ADDRESS as (local part, domain), or None when VERP is off."""
    configured = current_app.config.get("MAILER_BOUNCE_ADDRESS") or ""
    if not configured:
        return None
    local, _at, domain = configured.rpartition("<")[2].rstrip(">").strip().rpartition("@")
    return local, domain.lower()


def verp_address(delivery_id: int) -> str | None:
    """The signed return address of one delivery, or None when MAILER_BOUNCE_ADDRESS is unset."""
    configured = bounce_address()
    if configured is None:
        return None
    local, domain = configured
    mac = _mac(current_app.config["SECRET_KEY"], delivery_id)
    return f"{local}+{delivery_id}-{mac}@{domain}"


def is_bounce_domain(address: str) -> bool:
    """Whether mail to this address belongs to the bounce domain."""
    configured = bounce_address()
    return configured is not None and address.rpartition("@")[2].lower() == configured[1]


def delivery_of_verp(address: str) -> int | None:
    """The delivery a return address stands for, or None if it is not ours or its MAC is forged.

    Addresses signed with a key listed in MAILER_SECRET_KEY_FALLBACKS still count, so a key
    rotation does not lose the bounces of mail sent before it.
    """
    configured = bounce_address()
    if configured is None:
        return None
    local_part, _at, domain = address.strip().strip("<>").rpartition("@")
    match = _VERP.match(local_part.lower())
    if match is None or domain.lower() != configured[1]:
        return None
    if match["local"] != configured[0].lower():
        return None
    delivery_id = int(match["delivery"])
    config = current_app.config
    keys = [config["SECRET_KEY"], *config.get("SECRET_KEY_FALLBACKS", [])]
    if any(hmac.compare_digest(_mac(key, delivery_id), match["mac"]) for key in keys):
        return delivery_id
    return None


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
