"""The delivery journal: the rows of mail to send, who may receive it, and their Message-IDs."""

from __future__ import annotations

import logging
import os
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, cast, exists, func, literal, select, update
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.types import String

from .address_hash import sql_email_hash
from .extensions import db, dialect_insert
from .models import (
    Delivery,
    DeliveryCount,
    DeliveryKind,
    DeliveryStatus,
    Film,
    Subscriber,
    SubscriberStatus,
    Suppression,
    UTCDateTime,
)

log = logging.getLogger("mailer.journal")

# Deliveries still to be sent: a digest is finished only when none of its rows is in these.
OPEN_STATUSES = (DeliveryStatus.QUEUED, DeliveryStatus.CLAIMED)


# --- who may receive a message ------------------------------------------------------------------


@dataclass(frozen=True)
class Requirement:
    """One thing a subscriber must be to receive a kind of mail, and what to say when they're not.

    The enqueue's INSERT … SELECT and the sender's re-check both come from these, in SQL
    (``sql``) and in Python (``refusal`` on a row read with the same column names).
    """

    column: InstrumentedAttribute[Any]
    value: Any
    refused: str

    def sql(self) -> ColumnElement[bool]:
        """The requirement as a WHERE condition on subscribers."""
        if isinstance(self.value, bool):
            return self.column.is_(self.value)
        return self.column == self.value

    def refusal(self, subscriber: Any) -> str:
        """Why ``subscriber`` (anything with the column's attribute) fails it, or ""."""
        have = getattr(subscriber, self.column.key)
        if have == self.value:
            return ""
        return self.refused.format(have=have)


CONFIRMED = Requirement(Subscriber.status, SubscriberStatus.CONFIRMED, "subscriber {have}")
REQUIREMENTS: dict[str, tuple[Requirement, ...]] = {
    DeliveryKind.DIGEST: (
        CONFIRMED,
        Requirement(Subscriber.wants_digest, True, "digests turned off"),
    ),
    DeliveryKind.EARLY_ACCESS: (
        CONFIRMED,
        Requirement(Subscriber.wants_early_access, True, "early-access alerts turned off"),
    ),
}


def not_suppressed() -> ColumnElement[bool]:
    """SQL: the subscriber's address is not on the suppression list."""
    return ~exists().where(Suppression.email_hash == sql_email_hash(Subscriber.email))


def eligible(kind: DeliveryKind) -> list[ColumnElement[bool]]:
    """SQL: the subscribers who may receive mail of a bulk ``kind`` (the suppression list too)."""
    return [*(r.sql() for r in REQUIREMENTS[kind]), not_suppressed()]


def refusal(kind: str, subscriber: Any) -> str:
    """Why ``subscriber`` may not receive a bulk ``kind`` by their own choices, or "" if they may.

    The suppression list is checked apart, by address (see suppressions.email_hash).
    """
    for requirement in REQUIREMENTS.get(kind, ()):
        reason = requirement.refusal(subscriber)
        if reason:
            return reason
    return ""


def may_receive(kind: str, subscriber: Any | None) -> bool:
    """Whether a subscriber (or None) may get a bulk ``kind`` by their choices (early links too)."""
    return subscriber is not None and not refusal(kind, subscriber)


# --- retries ----------------------------------------------------------------------------------

# Retries never wait longer than this between two attempts (mail and webhooks alike).
MAX_RETRY_DELAY = 6 * 3600.0


def retry_delay(attempts: int, base: float) -> float:
    """Exponential back-off with jitter: about base·2^(attempts-1), between half and all of it."""
    delay = min(base * 2 ** max(attempts - 1, 0), MAX_RETRY_DELAY)
    return delay / 2 + random.uniform(0, delay / 2)


# --- Message-IDs --------------------------------------------------------------------------------


def _message_id_prefix(clock: Callable[[], float] = time.time) -> str:
    """Like email.utils.make_msgid: time, process and randomness."""
    return f"<{int(clock() * 100)}.{os.getpid()}.{secrets.randbelow(10**12)}.d"


def message_id(delivery_id: int, domain: str, clock: Callable[[], float] = time.time) -> str:
    """A new Message-ID for a delivery, unique by the delivery's id."""
    return f"{_message_id_prefix(clock)}{delivery_id}@{domain or 'localhost'}>"


def message_id_sql(domain: str) -> ColumnElement[str]:
    """SQL: a claimed row's Message-ID, its own if it has one, else a new one as message_id."""
    return func.coalesce(
        Delivery.message_id,
        literal(_message_id_prefix(), String())
        + cast(Delivery.id, String())
        + literal(f"@{domain or 'localhost'}>", String()),
    )


# --- writing rows -------------------------------------------------------------------------------


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


def _skip_queued(condition: ColumnElement[bool], reason: str) -> int:
    """Mark the queued deliveries that match as skipped; return how many."""
    result = db.session.execute(
        update(Delivery)
        .where(condition, Delivery.status == DeliveryStatus.QUEUED)
        .values(status=DeliveryStatus.SKIPPED, last_error=reason)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def skip_pending_for(subscriber_id: int, reason: str) -> int:
    """Mark every not-yet-sent delivery to a subscriber as skipped; return how many."""
    return _skip_queued(Delivery.subscriber_id == subscriber_id, reason)


def skip_pending_to(address: str, reason: str) -> int:
    """Mark every not-yet-sent delivery to the subscriber with this address as skipped."""
    return _skip_queued(
        Delivery.subscriber_id.in_(select(Subscriber.id).where(Subscriber.email == address)),
        reason,
    )


def skip_pending_of_digest(digest_id: int, reason: str) -> int:
    """Mark every not-yet-sent delivery of a digest as skipped; return how many."""
    return _skip_queued(Delivery.digest_id == digest_id, reason)


def enqueue_for(
    kind: DeliveryKind,
    now: datetime,
    *,
    digest_id: int | None = None,
    film_id: int | None = None,
) -> int:
    """One INSERT … SELECT … ON CONFLICT DO NOTHING of a delivery per eligible subscriber."""
    columns = [
        "kind",
        "status",
        "digest_id",
        "film_id",
        "subscriber_id",
        "attempts",
        "next_attempt_at",
        "created_at",
        "last_error",
    ]
    rows = select(
        literal(str(kind), String()),
        literal(str(DeliveryStatus.QUEUED), String()),
        literal(digest_id, db.Integer()),
        literal(film_id, db.Integer()),
        Subscriber.id,
        literal(0, db.Integer()),
        literal(now, UTCDateTime()),
        literal(now, UTCDateTime()),
        literal("", String()),
    ).where(*eligible(kind))
    # The unique keys behind ON CONFLICT (see models.Delivery); the alerts' one is partial.
    insert = dialect_insert(Delivery.__table__).from_select(columns, rows)
    if digest_id is not None:
        insert = insert.on_conflict_do_nothing(index_elements=["subscriber_id", "digest_id"])
    else:
        insert = insert.on_conflict_do_nothing(
            index_elements=["film_id", "subscriber_id"], index_where=Delivery.film_id.is_not(None)
        )
    # Drivers report an INSERT's row count only when asked to keep it.
    result = db.session.execute(insert.execution_options(preserve_rowcount=True))
    return max(int(result.rowcount or 0), 0)  # type: ignore[attr-defined]


def enqueue_digest(digest_id: int, now: datetime) -> int:
    """Queue the digest for every eligible subscriber; return how many rows were added."""
    return enqueue_for(DeliveryKind.DIGEST, now, digest_id=digest_id)


def enqueue_early_access(film_id: int, now: datetime) -> int:
    """Queue a film's alert for every eligible subscriber not alerted yet; return how many."""
    return enqueue_for(DeliveryKind.EARLY_ACCESS, now, film_id=film_id)


def enqueue_early_access_alerts(now: datetime) -> int:
    """Queue alerts for films whose early access opened; each film is claimed by one worker."""
    today = now.astimezone(UTC).date()
    film_ids = db.session.scalars(
        select(Film.id).where(
            Film.early_access_at <= now,
            Film.early_access_alerted_at.is_(None),
            Film.release_date > today,
        )
    ).all()
    total = 0
    for film_id in film_ids:
        # Compare-and-set: only the worker whose UPDATE hits the row enqueues the alerts.
        claimed = db.session.execute(
            update(Film)
            .where(Film.id == film_id, Film.early_access_alerted_at.is_(None))
            .values(early_access_alerted_at=now)
        )
        if not claimed.rowcount:  # type: ignore[attr-defined]
            db.session.rollback()
            continue
        added = enqueue_early_access(film_id, now)
        db.session.commit()
        log.info("film %s: early access opened, %d alerts queued", film_id, added)
        total += added
    return total


# --- counts -------------------------------------------------------------------------------------


def digest_counts(digest_id: int) -> dict[str, int]:
    """A digest's deliveries in each status (every status present); test sends are not counted."""
    counts = {str(status): 0 for status in DeliveryStatus}
    if db.session.get_bind().dialect.name == "postgresql":
        # Kept up to date by the database's triggers (see models.DeliveryCount).
        rows = db.session.execute(
            select(DeliveryCount.status, DeliveryCount.count).where(
                DeliveryCount.digest_id == digest_id
            )
        )
    else:
        rows = db.session.execute(
            select(Delivery.status, func.count())
            .where(Delivery.digest_id == digest_id, Delivery.kind != DeliveryKind.TEST)
            .group_by(Delivery.status)
        )
    for status, count in rows:
        counts[status] = int(count)
    return counts
