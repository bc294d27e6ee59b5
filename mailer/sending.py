"""The delivery journal: enqueue, claim, send, retry and finish; the digest lifecycle."""

from __future__ import annotations

import hashlib
import logging
import os
import random
import secrets
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask, current_app
from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    bindparam,
    case,
    cast,
    event,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import String

from . import emails, verp
from .backends import (
    Backend,
    Message,
    MessageRefused,
    PermanentFailure,
    SenderMisconfigured,
    TemporaryFailure,
)
from .extensions import db
from .models import (
    DUE_DIGEST,
    DUE_MAIL,
    LEASED,
    Delivery,
    DeliveryCount,
    DeliveryKind,
    DeliveryStatus,
    Digest,
    DigestStatus,
    Film,
    SendPace,
    Subscriber,
    SubscriberStatus,
    Suppression,
    SuppressionReason,
    UTCDateTime,
)

log = logging.getLogger("mailer.sending")

# Deliveries still to be sent: a digest is finished only when none of its rows is in these.
OPEN_STATUSES = (DeliveryStatus.QUEUED, DeliveryStatus.CLAIMED)
# Retries never wait longer than this between two attempts.
MAX_RETRY_DELAY = 6 * 3600.0
# A group of deliveries is re-checked, sent and journaled in one transaction, so a crash can
# resend what its group sent before the crash: at most GROUP_MAX messages per connection.
# Groups are also sized to take about GROUP_SECONDS: the locks a group holds (SQLite's write
# lock; the rows and their subscribers on PostgreSQL) keep an unsubscribe or a sign-up waiting
# at most about that long.
GROUP_SECONDS = 0.05
# The first group of a sender, and the bounds of the rest.
GROUP_FIRST = 5
GROUP_MIN = 1
GROUP_MAX = 10


# --- errors -------------------------------------------------------------------------------------


class InvalidTransition(Exception):
    """A digest cannot move from its current status to the one asked for."""

    def __init__(self, digest: Digest, action: str) -> None:
        super().__init__(f"digest {digest.id} is {digest.status}; it cannot be {action}")
        self.digest_id = digest.id
        self.status = digest.status
        self.action = action


class SendTimePassed(ValueError):
    """A digest cannot be scheduled for a time that has already passed."""

    def __init__(self) -> None:
        super().__init__("That time has passed: choose a later one, or send now.")


# --- suppression hashes -------------------------------------------------------------------------


def normalise_address(address: str) -> str:
    """The form of an address that suppression hashes are taken of."""
    return address.strip().lower()


def email_hash(address: str) -> str:
    """The suppression-list key of an address: hex SHA-256 of its normalised form."""
    return hashlib.sha256(normalise_address(address).encode("utf-8")).hexdigest()


class sql_email_hash(FunctionElement[str]):
    """email_hash() computed by the database, so eligibility stays one set-based query."""

    type = String()
    inherit_cache = True


@compiles(sql_email_hash, "postgresql")
def _email_hash_postgresql(element: sql_email_hash, compiler: Any, **kw: Any) -> str:
    """PostgreSQL: sha256() of the lower-cased, trimmed address, as hex."""
    arg = compiler.process(element.clauses, **kw)
    return f"encode(sha256(convert_to(lower(btrim({arg})), 'UTF8')), 'hex')"


@compiles(sql_email_hash, "sqlite")
def _email_hash_sqlite(element: sql_email_hash, compiler: Any, **kw: Any) -> str:
    """SQLite: a Python function registered on every connection."""
    return f"mailer_email_hash({compiler.process(element.clauses, **kw)})"


@event.listens_for(Engine, "connect")
def _register_sqlite_functions(dbapi_connection: Any, connection_record: Any) -> None:
    """Give SQLite connections the functions our queries use."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.create_function(
            "mailer_email_hash",
            1,
            lambda value: None if value is None else email_hash(value),
            deterministic=True,
        )


def _not_suppressed() -> ColumnElement[bool]:
    """The subscriber's address is not on the suppression list."""
    return ~exists().where(Suppression.email_hash == sql_email_hash(Subscriber.email))


def is_suppressed(address: str) -> bool:
    """Whether an address is on the suppression list."""
    found = db.session.scalar(
        select(Suppression.id).where(Suppression.email_hash == email_hash(address))
    )
    return found is not None


def suppress(address: str, reason: SuppressionReason, now: datetime, note: str = "") -> None:
    """Put an address on the suppression list (once; a second call changes nothing)."""
    stmt = (
        _insert(Suppression.__table__)
        .values(
            email_hash=email_hash(address),
            email=normalise_address(address),
            reason=reason,
            note=note[:2000],
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["email_hash"])
    )
    db.session.execute(stmt)


def _insert(table: Any) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT DO NOTHING."""
    if db.session.get_bind().dialect.name == "postgresql":
        return pg_insert(table)
    return sqlite_insert(table)


# --- enqueueing ---------------------------------------------------------------------------------


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


def _enqueue_for(
    kind: DeliveryKind,
    topic: ColumnElement[bool],
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
    eligible = select(
        literal(str(kind), String()),
        literal(str(DeliveryStatus.QUEUED), String()),
        literal(digest_id, db.Integer()),
        literal(film_id, db.Integer()),
        Subscriber.id,
        literal(0, db.Integer()),
        literal(now, UTCDateTime()),
        literal(now, UTCDateTime()),
        literal("", String()),
    ).where(Subscriber.status == SubscriberStatus.CONFIRMED, topic, _not_suppressed())
    # The unique keys behind ON CONFLICT (see models.Delivery); the alerts' one is partial.
    insert = _insert(Delivery.__table__).from_select(columns, eligible)
    if digest_id is not None:
        insert = insert.on_conflict_do_nothing(index_elements=["subscriber_id", "digest_id"])
    else:
        insert = insert.on_conflict_do_nothing(
            index_elements=["film_id", "subscriber_id"], index_where=Delivery.film_id.is_not(None)
        )
    stmt = (
        insert
        # Drivers report an INSERT's row count only when asked to keep it.
        .execution_options(preserve_rowcount=True)
    )
    result = db.session.execute(stmt)
    return max(int(result.rowcount or 0), 0)  # type: ignore[attr-defined]


def enqueue_digest(digest_id: int, now: datetime) -> int:
    """Queue the digest for every eligible subscriber; return how many rows were added."""
    return _enqueue_for(
        DeliveryKind.DIGEST, Subscriber.wants_digest.is_(True), now, digest_id=digest_id
    )


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
        added = _enqueue_for(
            DeliveryKind.EARLY_ACCESS,
            Subscriber.wants_early_access.is_(True),
            now,
            film_id=film_id,
        )
        db.session.commit()
        log.info("film %s: early access opened, %d alerts queued", film_id, added)
        total += added
    return total


# --- digest lifecycle ---------------------------------------------------------------------------


def _move(digest: Digest, new: DigestStatus, now: datetime, note: str = "") -> None:
    """Change a digest's status and say so in the log."""
    old = digest.status
    digest.status = new
    digest.updated_at = now
    log.info("digest %s: %s -> %s%s", digest.id, old, new, f" ({note})" if note else "")


def schedule_digest(digest: Digest, send_at: datetime | None, now: datetime) -> None:
    """Schedule a draft (or reschedule a scheduled) digest for send_at, or now when None.

    A time that has passed is refused, not taken as now: the admin form and the API share
    this one rule, and "now" is asked for by giving no time.
    """
    if digest.status not in (DigestStatus.DRAFT, DigestStatus.SCHEDULED):
        raise InvalidTransition(digest, "scheduled")
    if send_at is not None and send_at <= now:
        raise SendTimePassed
    digest.send_at = send_at or now
    _move(digest, DigestStatus.SCHEDULED, now, f"send at {digest.send_at.isoformat()}")


def pause_digest(digest: Digest, reason: str, now: datetime) -> None:
    """Stop a scheduled or sending digest; queued deliveries wait, the reason is shown."""
    if digest.status not in (DigestStatus.SCHEDULED, DigestStatus.SENDING, DigestStatus.PAUSED):
        raise InvalidTransition(digest, "paused")
    digest.pause_reason = reason
    _move(digest, DigestStatus.PAUSED, now, reason)


def resume_digest(digest: Digest, now: datetime) -> None:
    """Carry on with a paused digest where it stopped."""
    if digest.status != DigestStatus.PAUSED:
        raise InvalidTransition(digest, "resumed")
    digest.pause_reason = ""
    _move(
        digest,
        DigestStatus.SENDING if digest.started_at is not None else DigestStatus.SCHEDULED,
        now,
    )


def cancel_digest(digest: Digest, now: datetime) -> int:
    """Cancel a digest that is not finished; its queued deliveries are skipped (returned)."""
    if digest.status in (DigestStatus.SENT, DigestStatus.CANCELLED):
        raise InvalidTransition(digest, "cancelled")
    skipped = db.session.execute(
        update(Delivery)
        .where(Delivery.digest_id == digest.id, Delivery.status == DeliveryStatus.QUEUED)
        .values(status=DeliveryStatus.SKIPPED, last_error="digest cancelled")
    )
    digest.finished_at = now
    _move(digest, DigestStatus.CANCELLED, now)
    return int(skipped.rowcount or 0)  # type: ignore[attr-defined]


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


def start_due_digests(now: datetime) -> list[int]:
    """Start every scheduled digest whose time has come: enqueue it and mark it sending."""
    started: list[int] = []
    due = db.session.scalars(
        select(Digest.id).where(Digest.status == DigestStatus.SCHEDULED, Digest.send_at <= now)
    ).all()
    for digest_id in due:
        # Compare-and-set, so two workers never start (and enqueue) the same digest twice.
        moved = db.session.execute(
            update(Digest)
            .where(Digest.id == digest_id, Digest.status == DigestStatus.SCHEDULED)
            .values(status=DigestStatus.SENDING, started_at=now, updated_at=now)
        )
        if not moved.rowcount:  # type: ignore[attr-defined]
            db.session.rollback()
            continue
        queued = enqueue_digest(digest_id, now)
        db.session.commit()
        log.info("digest %s: scheduled -> sending (%d deliveries queued)", digest_id, queued)
        started.append(digest_id)
    return started


def finish_digests(now: datetime) -> list[int]:
    """Mark sent every sending digest that has no delivery left queued or claimed."""
    still_open = exists().where(Delivery.digest_id == Digest.id, Delivery.status.in_(OPEN_STATUSES))
    candidates = db.session.scalars(
        select(Digest.id).where(Digest.status == DigestStatus.SENDING, ~still_open)
    ).all()
    finished: list[int] = []
    for digest_id in candidates:
        moved = db.session.execute(
            update(Digest)
            .where(Digest.id == digest_id, Digest.status == DigestStatus.SENDING, ~still_open)
            .values(status=DigestStatus.SENT, finished_at=now, updated_at=now)
        )
        db.session.commit()
        if moved.rowcount:  # type: ignore[attr-defined]
            counts = digest_counts(digest_id)
            log.info(
                "digest %s: sending -> sent (%d sent, %d failed, %d skipped)",
                digest_id,
                counts[DeliveryStatus.SENT],
                counts[DeliveryStatus.FAILED],
                counts[DeliveryStatus.SKIPPED],
            )
            finished.append(digest_id)
    return finished


def _pause_for_error(digest_id: int, reason: str, now: datetime) -> None:
    """Pause a digest because our side is failing; nobody is blamed."""
    moved = db.session.execute(
        update(Digest)
        .where(
            Digest.id == digest_id,
            Digest.status.in_((DigestStatus.SENDING, DigestStatus.SCHEDULED)),
        )
        .values(status=DigestStatus.PAUSED, pause_reason=reason[:2000], updated_at=now)
    )
    if moved.rowcount:  # type: ignore[attr-defined]
        log.warning("digest %s: sending -> paused (%s)", digest_id, reason)


def _pause_digests_of(ids: Sequence[int], reason: str, now: datetime) -> None:
    """Pause every digest that some of these deliveries belong to."""
    digest_ids = db.session.scalars(
        select(Delivery.digest_id)
        .where(Delivery.id.in_(list(ids)), Delivery.kind == DeliveryKind.DIGEST)
        .distinct()
    ).all()
    for digest_id in digest_ids:
        if digest_id is not None:
            _pause_for_error(digest_id, reason, now)


# --- claiming -----------------------------------------------------------------------------------


def _claimable(now: datetime) -> ColumnElement[bool]:
    """Due queued rows, and rows whose lease ran out (their worker died), of live digests."""
    return and_(
        or_(
            and_(Delivery.status == DeliveryStatus.QUEUED, Delivery.next_attempt_at <= now),
            and_(Delivery.status == DeliveryStatus.CLAIMED, Delivery.lease_until < now),
        ),
        _live_digest(),
    )


def _due_branches(now: datetime) -> list[tuple[ColumnElement[bool], tuple[Any, ...]]]:
    """What a claim takes, in order, each matching one partial index (see models.Delivery).

    Leases that ran out (their worker died) first, then due mail that is not a digest (sign-up
    confirmations must not wait behind a long digest), then each sending digest's due rows.
    A paused digest's rows are never even looked at.
    """
    sending = db.session.scalars(
        select(Digest.id).where(Digest.status == DigestStatus.SENDING).order_by(Digest.id)
    ).all()
    by_time = (Delivery.next_attempt_at, Delivery.id)
    branches = [
        (
            and_(literal_column(LEASED), Delivery.lease_until < now),
            (Delivery.lease_until, Delivery.id),
        ),
        (and_(literal_column(DUE_MAIL), Delivery.next_attempt_at <= now), by_time),
    ]
    for digest_id in sending:
        due = and_(
            literal_column(DUE_DIGEST),
            Delivery.digest_id == digest_id,
            Delivery.next_attempt_at <= now,
        )
        branches.append((due, by_time))
    return branches


def claim_batch(worker: str, now: datetime, limit: int, lease_seconds: float) -> list[int]:
    """Lease up to ``limit`` due deliveries to ``worker``; return the ids actually leased.

    PostgreSQL locks the candidates with FOR UPDATE SKIP LOCKED, so workers never wait for
    each other; SQLite ignores FOR UPDATE, and there the repeated condition in the UPDATE is
    the compare-and-set: a row another worker took in between is simply not updated. Each
    Message-ID is fixed in the same UPDATE, before anything is sent, so a resend after a crash
    reuses it.
    """
    lease_until = now + timedelta(seconds=lease_seconds)
    message_id = _message_id_sql()
    claimed: list[int] = []
    for branch, order in _due_branches(now):
        wanted_count = limit - len(claimed)
        if wanted_count <= 0:
            break
        # Two statements, not UPDATE … WHERE id IN (subquery): PostgreSQL may run such a
        # subquery more than once and so lease more than ``limit`` rows.
        wanted = db.session.scalars(
            select(Delivery.id)
            .where(branch, _live_digest())
            .order_by(*order)
            .limit(wanted_count)
            .with_for_update(skip_locked=True)
        ).all()
        if not wanted:
            continue
        leased = db.session.scalars(
            update(Delivery)
            .where(Delivery.id.in_(wanted), branch, _live_digest())
            .values(
                status=DeliveryStatus.CLAIMED,
                claimed_by=worker,
                lease_until=lease_until,
                message_id=message_id,
            )
            .returning(Delivery.id)
            .execution_options(synchronize_session=False)
        ).all()
        claimed.extend(leased)
    db.session.commit()
    return sorted(claimed)


def _live_digest() -> ColumnElement[bool]:
    """Only a digest's own deliveries wait for it to be sending: a test send of a draft goes now."""
    return or_(
        Delivery.kind != DeliveryKind.DIGEST,
        Delivery.digest_id.in_(select(Digest.id).where(Digest.status == DigestStatus.SENDING)),
    )


def _message_id_sql() -> ColumnElement[str]:
    """The Message-ID a claimed row keeps: its own if it has one, else a new unique one.

    Like email.utils.make_msgid (time, process, randomness), with the row's id to make each one
    of the batch unique.
    """
    domain = emails.from_address()[1].rpartition("@")[2] or "localhost"
    prefix = f"<{int(time.time() * 100)}.{os.getpid()}.{secrets.randbelow(10**12)}.d"
    return func.coalesce(
        Delivery.message_id,
        literal(prefix, String()) + cast(Delivery.id, String()) + literal(f"@{domain}>", String()),
    )


def _held_by(ids: Sequence[int], worker: str) -> ColumnElement[bool]:
    """Those of ``ids`` still leased to ``worker`` (a lease that ran out may be another's now)."""
    return and_(
        Delivery.id.in_(list(ids)),
        Delivery.status == DeliveryStatus.CLAIMED,
        Delivery.claimed_by == worker,
    )


def release(ids: Sequence[int], worker: str) -> int:
    """Give leased deliveries back to the queue untouched (e.g. the digest was paused)."""
    if not ids:
        return 0
    result = db.session.execute(
        update(Delivery)
        .where(_held_by(ids, worker))
        .values(status=DeliveryStatus.QUEUED, claimed_by=None, lease_until=None)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def count_due(now: datetime) -> int:
    """How many deliveries could be claimed right now."""
    return int(
        db.session.scalar(select(func.count()).select_from(Delivery).where(_claimable(now))) or 0
    )


# --- rate limit ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Slots:
    """Start times granted to a group: its message i may start at first + i·interval, not before."""

    count: int
    first: float = 0.0
    interval: float = 0.0

    def start_of(self, index: int) -> float:
        """When message ``index`` of the group may start (seconds since the epoch)."""
        return self.first + index * self.interval


class SendRate:
    """Caps messages per second over all workers by handing out evenly spaced start times.

    The database keeps the next free slot; each grant moves it on by one interval (1/rate) per
    message, from now if it lies in the past, so nothing is saved up for a burst. Every message
    starts at its own slot or later, so at most ceil(rate·T) start in any window of T seconds.
    """

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self.interval = 1 / rate if rate > 0 else 0.0
        # A group waits for its slots holding its locks: keep that within GROUP_SECONDS.
        self.most = max(1, int(rate * GROUP_SECONDS))

    def acquire(self, wanted: int) -> Slots:
        """Take slots for up to ``wanted`` messages (at least one); commits its own transaction."""
        if self.rate <= 0:
            return Slots(wanted)
        count = max(1, min(wanted, self.most))
        step = round(self.interval * 1e6)
        now = round(self.clock() * 1e6)
        db.session.execute(
            _insert(SendPace.__table__)
            .values(id=1, next_slot_us=now)
            .on_conflict_do_nothing(index_elements=["id"])
        )
        # One UPDATE reads and moves the shared slot: concurrent workers queue on its row lock.
        after = db.session.scalar(
            update(SendPace)
            .where(SendPace.id == 1)
            .values(
                next_slot_us=case((SendPace.next_slot_us > now, SendPace.next_slot_us), else_=now)
                + count * step
            )
            .returning(SendPace.next_slot_us)
        )
        db.session.commit()
        assert after is not None
        return Slots(count, (int(after) - count * step) / 1e6, step / 1e6)

    def wait(self, slots: Slots, index: int) -> None:
        """Sleep until message ``index`` of the group may start."""
        delay = slots.start_of(index) - self.clock()
        if delay > 0:
            self.sleep(delay)


# --- sending ------------------------------------------------------------------------------------


@dataclass
class BatchStats:
    """What happened to the deliveries of one or more batches."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0
    released: int = 0

    @property
    def done(self) -> int:
        """Deliveries that reached an outcome (released ones did not)."""
        return self.sent + self.retried + self.failed + self.skipped

    def add(self, other: BatchStats) -> None:
        """Add another batch's numbers to these."""
        self.sent += other.sent
        self.retried += other.retried
        self.failed += other.failed
        self.skipped += other.skipped
        self.released += other.released


class StopBatch(Exception):
    """Our own side is failing: stop this batch and give the rest back."""


def retry_delay(attempts: int, base: float) -> float:
    """Exponential back-off with jitter: about base·2^(attempts-1), between half and all of it."""
    delay = min(base * 2 ** max(attempts - 1, 0), MAX_RETRY_DELAY)
    return delay / 2 + random.uniform(0, delay / 2)


@dataclass(slots=True)
class Job:
    """A claimed delivery as its group read it, with the attempt being made counted."""

    id: int
    kind: str
    digest_id: int | None
    film_id: int | None
    subscriber_id: int | None
    to_address: str | None
    attempts: int
    created_at: datetime
    message_id: str | None


@dataclass(slots=True)
class Reader:
    """A subscriber as the re-check and the personal links need them."""

    id: int
    email: str
    status: str
    wants_digest: bool
    wants_early_access: bool
    nonce: str
    unsubscribe_key: str


# Kinds sent from the pre-rendered bytes of their batch, to plain rows (no model objects).
BULK_KINDS = frozenset((DeliveryKind.DIGEST, DeliveryKind.EARLY_ACCESS))


@dataclass
class _Group:
    """What a group of deliveries needs for its re-check, read under the group's locks."""

    readers: dict[int, Reader]
    digest_status: dict[int, str]
    films: dict[int, Film]
    suppressed: set[str]


def _lock_group(ids: Sequence[int], worker: str) -> list[Job]:
    """Count the attempt of each delivery still leased to ``worker``; return them by id.

    One statement writes and reads the rows: rows missing from the result had their lease run
    out and belong to another worker now. Writing them first takes SQLite's write lock, and the
    rows' locks on PostgreSQL, for the rest of the group.
    """
    rows = db.session.execute(
        update(Delivery)
        .where(_held_by(ids, worker))
        .values(attempts=Delivery.attempts + 1)
        .returning(
            Delivery.id,
            Delivery.kind,
            Delivery.digest_id,
            Delivery.film_id,
            Delivery.subscriber_id,
            Delivery.to_address,
            Delivery.attempts,
            Delivery.created_at,
            Delivery.message_id,
        )
        .execution_options(synchronize_session=False)
    ).all()
    return sorted((Job(*row) for row in rows), key=lambda job: job.id)


def _load_group(jobs: Sequence[Job]) -> _Group:
    """Read, in a few set-based queries, the current state every re-check of a group needs."""
    subscriber_ids = {j.subscriber_id for j in jobs if j.subscriber_id is not None}
    digest_ids = {j.digest_id for j in jobs if j.digest_id is not None}
    film_ids = {j.film_id for j in jobs if j.film_id is not None}
    # (A query for an empty set is skipped: a digest's group has no films, an alert's no digest.)
    readers = {
        row.id: Reader(*row)
        for row in (
            db.session.execute(
                select(
                    Subscriber.id,
                    Subscriber.email,
                    Subscriber.status,
                    Subscriber.wants_digest,
                    Subscriber.wants_early_access,
                    Subscriber.nonce,
                    Subscriber.unsubscribe_key,
                )
                .where(Subscriber.id.in_(subscriber_ids))
                # PostgreSQL: an unsubscribe must wait for this group's sends (SQLite: already
                # locked).
                .with_for_update(read=True)
            )
            if subscriber_ids
            else ()
        )
    }
    digest_status: dict[int, str] = {
        row.id: row.status
        for row in (
            db.session.execute(select(Digest.id, Digest.status).where(Digest.id.in_(digest_ids)))
            if digest_ids
            else ()
        )
    }
    films = {
        f.id: f
        for f in (
            db.session.scalars(
                select(Film).where(Film.id.in_(film_ids)).execution_options(populate_existing=True)
            )
            if film_ids
            else ()
        )
    }
    addresses = {j.to_address for j in jobs if j.to_address} | {r.email for r in readers.values()}
    suppressed = set(
        db.session.scalars(
            select(Suppression.email_hash).where(
                Suppression.email_hash.in_({email_hash(a) for a in addresses})
            )
        )
        if addresses
        else ()
    )
    return _Group(readers, digest_status, films, suppressed)


def _skip_reason(job: Job, reader: Reader | None, group: _Group, now: datetime) -> str:
    """Why a claimed delivery must not go out now, or "" if it may."""
    if job.kind in BULK_KINDS:
        if reader is None:
            return "subscriber deleted"
        if reader.status != SubscriberStatus.CONFIRMED:
            return f"subscriber {reader.status}"
        if job.kind == DeliveryKind.DIGEST and not reader.wants_digest:
            return "digests turned off"
        if job.kind == DeliveryKind.EARLY_ACCESS:
            if not reader.wants_early_access:
                return "early-access alerts turned off"
            film = group.films.get(job.film_id) if job.film_id else None
            today = now.astimezone(UTC).date()
            if film is None or film.release_date is None or film.release_date <= today:
                return "film already public"
    address = job.to_address or (reader.email if reader is not None else None)
    if address is None:
        return "no recipient"
    if email_hash(address) in group.suppressed:
        return "address suppressed"
    return ""


_deliveries = Delivery.__table__
assert isinstance(_deliveries, Table)
_table = _deliveries.c
# One row of a group's outcome, written with executemany.
_FINISH = (
    update(_deliveries)
    .where(_table.id == bindparam("b_id"))
    .values(status=bindparam("b_status"), last_error=bindparam("b_note"), lease_until=None)
)
_RETRY = (
    update(_deliveries)
    .where(_table.id == bindparam("b_id"))
    .values(
        status=DeliveryStatus.QUEUED,
        claimed_by=None,
        lease_until=None,
        last_error=bindparam("b_note"),
        next_attempt_at=bindparam("b_next", type_=UTCDateTime()),
    )
)
_REQUEUE = (
    update(_deliveries)
    .where(_table.id == bindparam("b_id"))
    .values(
        status=DeliveryStatus.QUEUED,
        # The attempt that was counted is not one: the row goes back as it was.
        attempts=case((_table.attempts > 1, _table.attempts - 1), else_=0),
        claimed_by=None,
        lease_until=None,
        next_attempt_at=bindparam("b_next", type_=UTCDateTime()),
        last_error=func.coalesce(bindparam("b_note", type_=String()), _table.last_error),
    )
)


@dataclass
class _Outcomes:
    """A group's outcomes, kept until the group ends and then written in a few statements."""

    now: datetime
    sent: list[int] = field(default_factory=list)
    finished: list[dict[str, Any]] = field(default_factory=list)
    retried: list[dict[str, Any]] = field(default_factory=list)
    requeued: list[dict[str, Any]] = field(default_factory=list)
    untouched: list[int] = field(default_factory=list)

    def finish(self, job: Job, status: DeliveryStatus, note: str) -> None:
        """A final outcome; sent ones get their time."""
        if status == DeliveryStatus.SENT:
            self.sent.append(job.id)
        else:
            self.finished.append({"b_id": job.id, "b_status": str(status), "b_note": note[:2000]})

    def retry(self, job: Job, error: str, at: datetime) -> None:
        """Back to the queue, due again at ``at``."""
        self.retried.append({"b_id": job.id, "b_note": error[:2000], "b_next": at})

    def requeue(self, job: Job, note: str = "") -> None:
        """Back to the queue now, the attempt not counted."""
        self.requeued.append({"b_id": job.id, "b_note": note[:2000] or None, "b_next": self.now})

    def write(self) -> None:
        """Journal everything in the group's transaction (the caller commits)."""
        if self.sent:
            db.session.execute(
                update(Delivery)
                .where(Delivery.id.in_(self.sent))
                .values(
                    status=DeliveryStatus.SENT, sent_at=self.now, last_error="", lease_until=None
                )
                .execution_options(synchronize_session=False)
            )
        for statement, rows in (
            (_FINISH, self.finished),
            (_RETRY, self.retried),
            (_REQUEUE, self.requeued),
        ):
            if rows:
                db.session.execute(statement, rows)
        if self.untouched:
            # Not tried after all: they go back (see release) with the attempt not counted.
            db.session.execute(
                update(Delivery)
                .where(Delivery.id.in_(self.untouched))
                .values(attempts=Delivery.attempts - 1)
                .execution_options(synchronize_session=False)
            )


class Sender:
    """Sends claimed deliveries through one backend session, a group per transaction.

    Each group starts by writing its rows, which takes SQLite's write lock (and the rows' locks
    on PostgreSQL, with the subscribers locked for share), then re-checks every recipient and
    sends. So an unsubscribe that committed before is seen, and one that comes during waits for
    the group's commit: nothing is sent to an address after its unsubscribe has returned. The
    group's outcomes are journaled together at its end, in one commit. A crash can lose at most
    one group's outcomes, whose rows are still claimed: they are sent again after their lease,
    with the Message-IDs fixed when they were claimed. So a crash resends at most GROUP_MAX
    messages per connection. Groups are sized to take about GROUP_SECONDS, so the locks are
    held briefly however fast or slow the server is.
    """

    def __init__(self, worker: str, backend: Backend, clock: Callable[[], datetime]) -> None:
        self.worker = worker
        self.backend = backend
        self.clock = clock
        self.cache = emails.RenderCache()
        config = current_app.config
        self.deadline = timedelta(seconds=config["MAILER_RETRY_DEADLINE"])
        self.retry_base = float(config["MAILER_RETRY_DELAY"])
        self.pause_after = int(config["MAILER_PAUSE_AFTER_CONNECTION_ERRORS"])
        self.rate = SendRate(float(config["MAILER_SEND_RATE"]))
        self.connection_errors = 0
        # Messages the server refused in a row, whoever they were for (reset by a send).
        self.message_refusals = 0
        self.group_size = GROUP_FIRST

    def send_batch(
        self, ids: Sequence[int], progress: Callable[[int], None] | None = None
    ) -> BatchStats:
        """Send the leased deliveries ``ids`` in one backend session."""
        stats = BatchStats()
        started = time.monotonic()
        remaining = list(ids)
        try:
            with self.backend:
                while remaining:
                    slots = self.rate.acquire(min(self.group_size, len(remaining)))
                    group, remaining = remaining[: slots.count], remaining[slots.count :]
                    # Wait for the first slot before the group takes its locks.
                    self.rate.wait(slots, 0)
                    group_started = time.monotonic()
                    try:
                        done = self._send_group(group, stats, slots)
                    except StopBatch:
                        remaining = group + remaining
                        raise
                    self._resize(len(group), time.monotonic() - group_started)
                    if progress is not None:
                        progress(done)
        except StopBatch as stop:
            log.warning("batch stopped: %s", stop)
        except TemporaryFailure as exc:
            # The session could not even be opened: one connection error for the batch.
            db.session.rollback()
            self.connection_errors += 1
            self._connection_error(remaining[0] if remaining else None, str(exc))
            db.session.commit()
        except SenderMisconfigured as exc:
            # The server refuses us before any message (e.g. the login): nothing can go out
            # until someone fixes the setup, so the digests wait and the caller is told.
            db.session.rollback()
            _pause_digests_of(remaining, f"the mail server refused us: {exc}", self.clock())
            db.session.commit()
            raise
        finally:
            db.session.rollback()
            stats.released += release(remaining, self.worker)
        elapsed = time.monotonic() - started
        log.info(
            "batch of %d: %d sent, %d retried, %d failed, %d skipped, %d given back "
            "in %.2f s (%.1f/s)",
            len(ids),
            stats.sent,
            stats.retried,
            stats.failed,
            stats.skipped,
            stats.released,
            elapsed,
            stats.sent / elapsed if elapsed > 0 else 0.0,
        )
        return stats

    def _resize(self, size: int, seconds: float) -> None:
        """Size the next group to take about GROUP_SECONDS at this group's pace."""
        paced = int(size * GROUP_SECONDS / max(seconds, 1e-4))
        self.group_size = max(GROUP_MIN, min(GROUP_MAX, paced, self.group_size * 4))

    def _send_group(self, ids: Sequence[int], stats: BatchStats, slots: Slots) -> int:
        """Lock, re-check, send and journal a group of deliveries in one commit; how many."""
        now = self.clock()
        self.cache.new_transaction()
        jobs = _lock_group(ids, self.worker)
        group = _load_group(jobs)
        outcomes = _Outcomes(now)
        for index, job in enumerate(jobs):
            self.rate.wait(slots, index)
            try:
                self._send_one(job, group, now, stats, outcomes)
            except StopBatch:
                # This one is recorded; the rest of the group goes back untouched.
                outcomes.untouched = [rest.id for rest in jobs[index + 1 :]]
                outcomes.write()
                db.session.commit()
                raise
        outcomes.write()
        db.session.commit()
        return len(jobs)

    def _send_one(
        self, job: Job, group: _Group, now: datetime, stats: BatchStats, outcomes: _Outcomes
    ) -> None:
        """Re-check, render and send one delivery; keep its outcome for the group's journal."""
        reader = group.readers.get(job.subscriber_id) if job.subscriber_id is not None else None
        if job.kind == DeliveryKind.DIGEST and job.digest_id is not None:
            status = group.digest_status.get(job.digest_id)
            if status in (DigestStatus.CANCELLED, None):
                outcomes.finish(job, DeliveryStatus.SKIPPED, "digest cancelled")
                stats.skipped += 1
                return
            if status != DigestStatus.SENDING:
                outcomes.requeue(job)
                stats.released += 1
                return
        reason = _skip_reason(job, reader, group, now)
        if reason:
            outcomes.finish(job, DeliveryStatus.SKIPPED, reason)
            stats.skipped += 1
            return
        try:
            message = self._render(job, reader, now)
        except emails.Undeliverable as exc:
            outcomes.finish(job, DeliveryStatus.SKIPPED, f"not sent: {exc}")
            stats.skipped += 1
            return
        except emails.UnsafeHeader as exc:  # content stored before a rule refused it: no bug
            log.warning("delivery %s cannot be rendered: %s", job.id, exc)
            outcomes.finish(job, DeliveryStatus.FAILED, f"cannot render: {exc}")
            stats.failed += 1
            return
        except Exception as exc:  # a message that cannot be built must not stop the others
            log.exception("delivery %s cannot be rendered", job.id)
            outcomes.finish(job, DeliveryStatus.FAILED, f"cannot render: {exc}")
            stats.failed += 1
            return
        message = verp.with_return_path(message, job.id)  # Bounces: the VERP envelope sender
        try:
            self.backend.send(message)
        except PermanentFailure as exc:
            self.connection_errors = 0
            from .bounces import BounceKind, record_bounce  # Bounces: (imports sending)

            record_bounce(  # Bounces: recorded and counted like any other; it suppresses
                delivery_id=job.id,
                address=message.recipients[0],
                kind=BounceKind.HARD,
                diagnostic=str(exc),
                when=now,
                source="smtp-session",
                status=exc.enhanced_status or "",
            )
            group.suppressed.add(email_hash(message.recipients[0]))
            outcomes.finish(job, DeliveryStatus.FAILED, str(exc))
            stats.failed += 1
        except MessageRefused as exc:
            self.connection_errors = 0
            outcomes.finish(job, DeliveryStatus.FAILED, f"message refused: {exc}")
            stats.failed += 1
            self._message_refused(job, str(exc), now)
        except SenderMisconfigured as exc:
            if job.kind != DeliveryKind.DIGEST or job.digest_id is None:
                self._retry(job, now, str(exc), stats, outcomes)
                return
            _pause_for_error(job.digest_id, f"the mail server refused us: {exc}", now)
            outcomes.requeue(job, str(exc))
            stats.released += 1
            raise StopBatch(str(exc)) from exc
        except TemporaryFailure as exc:
            if exc.smtp_code is not None:
                self.connection_errors = 0
            else:
                self.connection_errors += 1
                if (
                    self.connection_errors >= self.pause_after
                    and job.kind == DeliveryKind.DIGEST
                    and job.digest_id is not None
                ):
                    outcomes.requeue(job, str(exc))
                    stats.released += 1
                    self._connection_error(job.id, str(exc))
                    raise StopBatch(str(exc)) from exc
            self._retry(job, now, str(exc), stats, outcomes)
        else:
            self.connection_errors = 0
            self.message_refusals = 0
            outcomes.finish(job, DeliveryStatus.SENT, "")
            stats.sent += 1

    def _render(self, job: Job, reader: Reader | None, now: datetime) -> Message:
        """The message: bulk kinds from the rows as read, the others from their model objects."""
        if job.kind in BULK_KINDS and reader is not None:
            return emails.render_bulk(job, reader, self.cache, now)
        delivery = db.session.get(Delivery, job.id, populate_existing=True)
        if delivery is None:
            raise emails.Undeliverable(f"delivery {job.id} is gone")
        subscriber = (
            db.session.get(Subscriber, job.subscriber_id, populate_existing=True)
            if job.subscriber_id is not None
            else None
        )
        return emails.render_delivery(delivery, subscriber, self.cache, now)

    def _message_refused(self, job: Job, error: str, now: datetime) -> None:
        """After too many refused messages in a row, pause the digest: its content is at fault."""
        self.message_refusals += 1
        if (
            self.message_refusals < self.pause_after
            or job.kind != DeliveryKind.DIGEST
            or job.digest_id is None
        ):
            return
        reason = (
            f"{self.message_refusals} messages in a row refused by the mail server; last: {error}"
        )
        self.message_refusals = 0
        _pause_for_error(job.digest_id, reason, now)
        raise StopBatch(reason)

    def _connection_error(self, delivery_id: int | None, error: str) -> None:
        """After too many connection errors in a row, pause the digest being sent."""
        if delivery_id is None or self.connection_errors < self.pause_after:
            return
        digest_id = db.session.scalar(
            select(Delivery.digest_id).where(
                Delivery.id == delivery_id, Delivery.kind == DeliveryKind.DIGEST
            )
        )
        if digest_id is not None:
            _pause_for_error(
                digest_id,
                f"{self.connection_errors} connection errors in a row; last: {error}",
                self.clock(),
            )
        self.connection_errors = 0

    def _retry(
        self, job: Job, now: datetime, error: str, stats: BatchStats, outcomes: _Outcomes
    ) -> None:
        """Back off and try again later, or fail once the retry deadline has passed."""
        if now - job.created_at >= self.deadline:
            outcomes.finish(job, DeliveryStatus.FAILED, f"gave up: {error}")
            stats.failed += 1
            return
        delay = timedelta(seconds=retry_delay(job.attempts, self.retry_base))
        outcomes.retry(job, error, now + delay)
        stats.retried += 1


def init_app(app: Flask) -> None:
    """Register the `mailer worker` and `mailer deliver` commands."""
    from .scheduler import deliver_command, worker_command

    app.cli.add_command(worker_command)
    app.cli.add_command(deliver_command)
