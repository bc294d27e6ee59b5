"""The delivery journal in process: enqueueing, claims, the digest lifecycle, rate and retries."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, literal, select, text

from mailer.address_hash import email_hash, sql_email_hash
from mailer.backends import Message, backend_from_url
from mailer.digests import (
    InvalidTransition,
    cancel_digest,
    finish_digests,
    pause_digest,
    resume_digest,
    schedule_digest,
    start_due_digests,
)
from mailer.extensions import db
from mailer.journal import (
    digest_counts,
    enqueue_digest,
    enqueue_early_access_alerts,
    queue_message,
    retry_delay,
    skip_pending_for,
)
from mailer.models import (
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Digest,
    DigestStatus,
    Film,
    Subscriber,
    SubscriberStatus,
    Suppression,
    SuppressionReason,
)
from mailer.sending import (
    GROUP_FIRST,
    GROUP_MAX,
    GROUP_MIN,
    GROUP_SECONDS,
    Sender,
    SendRate,
    Slots,
    _due_branches,
    claim_batch,
)
from mailer.suppressions import is_suppressed, suppress
from tests.factories import add_digest, add_subscribers
from tests.smtp_server import ScriptedSMTPServer

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


@pytest.fixture
def ctx(app: Flask) -> Iterator[None]:
    with app.app_context():
        yield
        db.session.rollback()


def rows(digest_id: int) -> int:
    return int(
        db.session.scalar(
            select(func.count()).select_from(Delivery).where(Delivery.digest_id == digest_id)
        )
        or 0
    )


@pytest.mark.usefixtures("ctx")
def test_email_hash_is_the_same_in_python_and_in_the_database() -> None:
    address = " Reader.Name@Example.ORG "
    assert email_hash(address) == email_hash("reader.name@example.org")
    assert len(email_hash(address)) == 64
    assert db.session.scalar(select(sql_email_hash(literal(address)))) == email_hash(address)


@pytest.mark.usefixtures("ctx")
def test_enqueue_digest_picks_eligible_subscribers_once() -> None:
    eligible = set(add_subscribers(5, now=NOW))
    add_subscribers(2, now=NOW, prefix="pending", status=SubscriberStatus.PENDING)
    add_subscribers(2, now=NOW, prefix="gone", status=SubscriberStatus.UNSUBSCRIBED)
    add_subscribers(2, now=NOW, prefix="nodigest", wants_digest=False)
    (bounced,) = add_subscribers(1, now=NOW, prefix="bounced")
    suppress("  BOUNCED00000@example.org", SuppressionReason.HARD_BOUNCE, NOW)
    digest_id = add_digest("Eligible", now=NOW, status=DigestStatus.SENDING)
    assert enqueue_digest(digest_id, NOW) == 5
    assert enqueue_digest(digest_id, NOW) == 0
    db.session.commit()
    queued = set(
        db.session.scalars(select(Delivery.subscriber_id).where(Delivery.digest_id == digest_id))
    )
    assert queued == eligible
    assert bounced not in queued
    assert rows(digest_id) == 5


@pytest.mark.usefixtures("ctx")
def test_early_access_alerts_go_once_per_film_to_those_who_want_them() -> None:
    add_subscribers(3, now=NOW)
    add_subscribers(2, now=NOW, prefix="noalerts", wants_early_access=False)
    opened = Film(
        slug="opened",
        title="Opened",
        early_access_at=NOW - timedelta(hours=1),
        release_date=date(2026, 12, 24),
    )
    later = Film(
        slug="later",
        title="Later",
        early_access_at=NOW + timedelta(days=1),
        release_date=date(2026, 12, 24),
    )
    public = Film(slug="public", title="Public", early_access_at=NOW - timedelta(days=9))
    db.session.add_all([opened, later, public])
    db.session.commit()
    assert enqueue_early_access_alerts(NOW) == 3
    assert enqueue_early_access_alerts(NOW) == 0
    kinds = db.session.execute(select(Delivery.kind, Delivery.film_id).distinct()).all()
    assert kinds == [(DeliveryKind.EARLY_ACCESS, opened.id)]
    db.session.refresh(opened)
    assert opened.early_access_alerted_at == NOW


@pytest.mark.usefixtures("ctx")
def test_claims_do_not_overlap_and_expired_leases_come_back() -> None:
    add_subscribers(10, now=NOW)
    digest_id = add_digest("Claimed", now=NOW)
    assert start_due_digests(NOW) == [digest_id]
    first = claim_batch("a", NOW, 6, 60)
    second = claim_batch("b", NOW, 6, 60)
    assert len(first) == 6 and len(second) == 4
    assert not set(first) & set(second)
    assert claim_batch("c", NOW, 6, 60) == []
    message_ids = dict(db.session.execute(select(Delivery.id, Delivery.message_id)).all())
    assert all(message_ids.values()), "Message-IDs are fixed when claimed"
    # Worker "a" died: after its lease, its rows are claimable, with the same Message-IDs.
    later = NOW + timedelta(seconds=61)
    retaken = claim_batch("c", later, 20, 60)
    assert sorted(retaken) == sorted(first + second)
    db.session.expire_all()
    assert dict(db.session.execute(select(Delivery.id, Delivery.message_id)).all()) == message_ids


@pytest.mark.usefixtures("ctx")
def test_paused_digests_are_not_claimed_and_lifecycle_rules_hold() -> None:
    add_subscribers(4, now=NOW)
    digest = Digest(subject="Lifecycle")
    db.session.add(digest)
    db.session.commit()
    with pytest.raises(InvalidTransition):
        resume_digest(digest, NOW)
    schedule_digest(digest, None, NOW)
    assert digest.status == DigestStatus.SCHEDULED and digest.send_at == NOW
    db.session.commit()
    start_due_digests(NOW)
    db.session.refresh(digest)
    assert digest.status == DigestStatus.SENDING
    pause_digest(digest, "checking a typo", NOW)
    db.session.commit()
    assert claim_batch("a", NOW, 10, 60) == []
    with pytest.raises(InvalidTransition):
        schedule_digest(digest, NOW, NOW)
    resume_digest(digest, NOW)
    assert digest.status == DigestStatus.SENDING
    db.session.commit()
    claimed = claim_batch("a", NOW, 1, 60)
    assert len(claimed) == 1
    assert finish_digests(NOW) == []  # still queued and claimed rows
    assert cancel_digest(digest, NOW) == 3
    db.session.commit()
    counts = digest_counts(digest.id)
    assert counts[DeliveryStatus.SKIPPED] == 3
    assert counts[DeliveryStatus.CLAIMED] == 1
    assert counts[DeliveryStatus.SENT] == 0
    with pytest.raises(InvalidTransition):
        cancel_digest(digest, NOW)


@pytest.mark.usefixtures("ctx")
def test_a_digest_is_sent_only_when_nothing_is_left_open() -> None:
    add_subscribers(2, now=NOW)
    digest_id = add_digest("Finished", now=NOW)
    start_due_digests(NOW)
    db.session.execute(
        Delivery.__table__.update()
        .where(Delivery.digest_id == digest_id)
        .values(status=DeliveryStatus.SENT)
    )
    db.session.commit()
    assert finish_digests(NOW) == [digest_id]
    assert db.session.get(Digest, digest_id).status == DigestStatus.SENT  # type: ignore[union-attr]


@pytest.mark.usefixtures("ctx")
def test_send_rate_spaces_every_workers_slots_and_saves_up_no_burst() -> None:
    clock = [1000.0]
    naps: list[float] = []
    workers = [SendRate(40, clock=lambda: clock[0], sleep=naps.append) for _ in range(3)]
    granted = [w.acquire(10) for w in workers]
    # 40/s and groups of GROUP_SECONDS: two slots a grant, 25 ms apart, one after the other.
    assert [g.count for g in granted] == [2, 2, 2]
    starts = [g.start_of(i) for g in granted for i in range(g.count)]
    assert starts == pytest.approx([1000 + i * 0.025 for i in range(6)])
    workers[2].wait(granted[2], 1)
    assert naps == [pytest.approx(0.125)]
    clock[0] = 1060.0  # a quiet minute saves nothing up: the next slot is now, then spaced
    later = workers[0].acquire(10)
    assert later.first == pytest.approx(1060.0) and later.interval == pytest.approx(0.025)
    slow = SendRate(0.5, clock=lambda: clock[0])
    assert slow.acquire(10) == Slots(1, pytest.approx(1060.05), 2.0)
    assert SendRate(0).acquire(7) == Slots(7)


def test_retry_delay_grows_with_jitter() -> None:
    for attempts in (1, 2, 5):
        for _ in range(50):
            delay = retry_delay(attempts, 10)
            full = 10 * 2 ** (attempts - 1)
            assert full / 2 <= delay <= full
    assert retry_delay(100, 10) <= 6 * 3600


@pytest.mark.usefixtures("ctx")
def test_temporary_failures_fail_after_the_retry_deadline(
    app: Flask, smtp_server: ScriptedSMTPServer
) -> None:
    smtp_server.add_rule(lambda rcpt: "451 4.2.0 mailbox busy")
    digest = Digest(subject="Busy week")
    db.session.add(digest)
    db.session.flush()
    young = queue_message(
        DeliveryKind.TEST, None, NOW, to_address="young@example.org", digest_id=digest.id
    )
    old = queue_message(
        DeliveryKind.TEST, None, NOW, to_address="old@example.org", digest_id=digest.id
    )
    db.session.flush()
    old.created_at = NOW - timedelta(days=4)
    db.session.commit()
    sender = Sender("w", backend_from_url(smtp_server.url), lambda: NOW)
    ids = claim_batch("w", NOW, 10, 60)
    stats = sender.send_batch(ids)
    assert (stats.retried, stats.failed, stats.sent) == (1, 1, 0)
    db.session.expire_all()
    assert old.status == DeliveryStatus.FAILED and old.last_error.startswith("gave up")
    assert young.status == DeliveryStatus.QUEUED and young.next_attempt_at > NOW
    assert db.session.scalar(select(func.count()).select_from(Suppression)) == 0


@pytest.mark.usefixtures("ctx")
def test_a_test_send_of_a_draft_goes_out_while_its_digest_waits(app: Flask) -> None:
    (subscriber_id,) = add_subscribers(1, now=NOW, prefix="editor")
    digest_id = add_digest("Draft", now=NOW, status=DigestStatus.DRAFT)
    subscriber = db.session.get(Subscriber, subscriber_id)
    queue_message(
        DeliveryKind.TEST, None, NOW, to_address="editor@example.org", digest_id=digest_id
    )
    queue_message(DeliveryKind.DIGEST, subscriber, NOW, digest_id=digest_id)
    db.session.commit()
    backend = app.extensions["mailer.backend"]
    ids = claim_batch("w", NOW, 10, 60)
    assert len(ids) == 1
    stats = Sender("w", backend, lambda: NOW).send_batch(ids)
    assert stats.sent == 1
    assert [m.recipients for m in backend.outbox] == [("editor@example.org",)]


def _journal() -> dict[int, Delivery]:
    db.session.expire_all()
    return {d.id: d for d in db.session.scalars(select(Delivery).order_by(Delivery.id))}


@pytest.mark.usefixtures("ctx")
def test_a_group_journals_every_outcome_at_once(
    app: Flask, smtp_server: ScriptedSMTPServer
) -> None:
    busy, gone = "reader00001@example.org", "reader00002@example.org"
    smtp_server.add_rule(
        lambda rcpt: {busy: "451 4.3.0 try later", gone: "550 5.1.1 no such user"}.get(rcpt)
    )
    ids = add_subscribers(6, now=NOW)
    digest_id = add_digest("Mixed outcomes", now=NOW, status=DigestStatus.SENDING)
    enqueue_digest(digest_id, NOW)
    left = db.session.get(Subscriber, ids[3])
    assert left is not None
    left.status = SubscriberStatus.UNSUBSCRIBED
    # Suppressed after the enqueue by a path that leaves the queue alone: the re-check skips it.
    db.session.add(
        Suppression(
            email_hash=email_hash("reader00004@example.org"),
            email="reader00004@example.org",
            reason=SuppressionReason.MANUAL,
            created_at=NOW,
        )
    )
    db.session.commit()
    claimed = claim_batch("w", NOW, 10, 60)
    assert len(claimed) == 6
    message_ids = {d.id: d.message_id for d in _journal().values()}
    stats = Sender("w", backend_from_url(smtp_server.url), lambda: NOW).send_batch(claimed)
    assert (stats.sent, stats.retried, stats.failed, stats.skipped) == (2, 1, 1, 2)
    by_subscriber = {d.subscriber_id: d for d in _journal().values()}
    sent = [by_subscriber[ids[0]], by_subscriber[ids[5]]]
    assert all(d.status == DeliveryStatus.SENT and d.sent_at == NOW for d in sent)
    retried = by_subscriber[ids[1]]
    assert retried.status == DeliveryStatus.QUEUED and retried.next_attempt_at > NOW
    assert "451" in retried.last_error and retried.claimed_by is None
    failed = by_subscriber[ids[2]]
    assert failed.status == DeliveryStatus.FAILED and "5.1.1" in failed.last_error
    assert by_subscriber[ids[3]].last_error == "subscriber unsubscribed"
    assert by_subscriber[ids[4]].last_error == "address suppressed"
    for delivery in by_subscriber.values():
        assert delivery.attempts == 1
        assert delivery.lease_until is None
        assert delivery.message_id == message_ids[delivery.id]
    assert is_suppressed(gone)
    # What the server got carries the Message-IDs fixed at the claim.
    got = {item.rcpt_tos[0]: item.message["Message-ID"] for item in smtp_server.received}
    assert got == {
        "reader00000@example.org": message_ids[by_subscriber[ids[0]].id],
        "reader00005@example.org": message_ids[by_subscriber[ids[5]].id],
    }


class _CrashAfter:
    """A backend that accepts some messages, then dies as a killed process would."""

    def __init__(self, accepted: int) -> None:
        self.left = accepted
        self.sent: list[str] = []

    def __enter__(self) -> _CrashAfter:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def send(self, message: Message) -> None:
        if self.left == 0:
            raise SystemExit("killed")
        self.left -= 1
        self.sent.append(message.message_id)


@pytest.mark.usefixtures("ctx")
def test_a_crash_mid_group_resends_that_group_with_its_message_ids(app: Flask) -> None:
    add_subscribers(8, now=NOW)
    digest_id = add_digest("Crashed", now=NOW, status=DigestStatus.SENDING)
    enqueue_digest(digest_id, NOW)
    db.session.commit()
    claimed = claim_batch("w", NOW, 10, 60)
    crashing = _CrashAfter(accepted=3)
    with pytest.raises(SystemExit):
        Sender("w", crashing, lambda: NOW).send_batch(claimed)
    db.session.rollback()
    journal = _journal()
    # Nothing of the group was journaled: its rows are still leased, none counted as sent; the
    # rest of the batch went back to the queue untouched.
    statuses = [journal[i].status for i in sorted(claimed)]
    expected = [DeliveryStatus.CLAIMED] * GROUP_FIRST + [DeliveryStatus.QUEUED] * (8 - GROUP_FIRST)
    assert statuses == expected
    # After the lease another worker takes them over and sends them with the same Message-IDs.
    later = NOW + timedelta(seconds=61)
    retaken = claim_batch("other", later, 10, 60)
    assert sorted(retaken) == sorted(claimed)
    backend = app.extensions["mailer.backend"]
    stats = Sender("other", backend, lambda: later).send_batch(retaken)
    assert stats.sent == 8
    resent = {m.message_id for m in backend.outbox}
    assert set(crashing.sent) <= resent
    assert {d.message_id for d in _journal().values()} == resent


@pytest.mark.usefixtures("ctx")
def test_claims_take_expired_leases_then_other_mail_then_each_sending_digest() -> None:
    (reader,) = add_subscribers(1, now=NOW, prefix="new")
    add_subscribers(4, now=NOW)
    paused = add_digest("Paused", now=NOW, status=DigestStatus.SENDING)
    sending = add_digest("Sending", now=NOW, status=DigestStatus.SENDING)
    enqueue_digest(paused, NOW - timedelta(hours=1))
    enqueue_digest(sending, NOW)
    digest = db.session.get(Digest, paused)
    assert digest is not None
    pause_digest(digest, "checking", NOW)
    subscriber = db.session.get(Subscriber, reader)
    queue_message(DeliveryKind.CONFIRMATION, subscriber, NOW)
    db.session.commit()
    first = claim_batch("a", NOW, 2, 60)
    kinds = sorted(db.session.scalars(select(Delivery.kind).where(Delivery.id.in_(first))))
    # The confirmation, though queued last, goes before the digest's rows.
    assert kinds == [DeliveryKind.CONFIRMATION, DeliveryKind.DIGEST]
    # The paused digest's rows, though older, are never claimed.
    rest = claim_batch("b", NOW, 20, 600)
    digests = set(db.session.scalars(select(Delivery.digest_id).where(Delivery.id.in_(rest))))
    assert digests == {sending} and len(first + rest) == 6
    # Worker "a" died: its leases come back first, before anything else due.
    queue_message(DeliveryKind.WELCOME, subscriber, NOW)
    db.session.commit()
    retaken = claim_batch("c", NOW + timedelta(seconds=61), 2, 60)
    assert sorted(retaken) == sorted(first)


def _plan(statement: Any) -> str:
    """The database's plan for a statement, as text."""
    bind = db.session.get_bind()
    compiled = statement.compile(bind, compile_kwargs={"literal_binds": True})
    prefix = "EXPLAIN " if bind.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN "
    return "\n".join(str(row[-1]) for row in db.session.execute(text(prefix + str(compiled))))


@pytest.mark.usefixtures("ctx")
def test_each_claim_walks_its_partial_index() -> None:
    add_subscribers(50, now=NOW)
    digest_id = add_digest("Indexed", now=NOW, status=DigestStatus.SENDING)
    enqueue_digest(digest_id, NOW)
    db.session.commit()
    bind = db.session.get_bind()
    if bind.dialect.name == "postgresql":
        # A table this small would be read whole; the plan must be able to use the index.
        db.session.execute(text("SET LOCAL enable_seqscan = off"))
    names = {
        "ix_deliveries_leased": 0,
        "ix_deliveries_due_mail": 1,
        "ix_deliveries_due_digest": 2,
    }
    branches = _due_branches(NOW)
    for index, position in names.items():
        condition, order = branches[position]
        plan = _plan(select(Delivery.id).where(condition).order_by(*order).limit(10))
        assert index in plan, plan
    db.session.rollback()


@pytest.mark.usefixtures("ctx")
def test_groups_are_sized_by_their_pace_within_bounds(app: Flask) -> None:
    sender = Sender("w", app.extensions["mailer.backend"], lambda: NOW)
    assert sender.group_size == GROUP_FIRST
    sender._resize(GROUP_FIRST, 0.001)  # very fast: grows to GROUP_MAX, no further
    assert sender.group_size == GROUP_MAX
    sender._resize(GROUP_MAX, 0.25)  # slow server: GROUP_SECONDS' worth
    assert sender.group_size == int(GROUP_MAX * GROUP_SECONDS / 0.25)
    sender._resize(1, 60.0)
    assert sender.group_size == GROUP_MIN
    sender._resize(1, 0.001)  # grows at most fourfold at a time
    assert sender.group_size == 4 * GROUP_MIN


def _counted(digest_id: int) -> dict[str, int]:
    """A digest's deliveries counted row by row, as digest_counts must agree."""
    counts = {str(status): 0 for status in DeliveryStatus}
    for status, count in db.session.execute(
        select(Delivery.status, func.count())
        .where(Delivery.digest_id == digest_id, Delivery.kind != DeliveryKind.TEST)
        .group_by(Delivery.status)
    ):
        counts[status] = count
    return counts


@pytest.mark.usefixtures("ctx")
def test_dashboard_counts_follow_every_change_to_the_journal(
    app: Flask, smtp_server: ScriptedSMTPServer
) -> None:
    smtp_server.add_rule(
        lambda rcpt: "550 5.1.1 no such user" if rcpt == "reader00002@example.org" else None
    )
    ids = add_subscribers(12, now=NOW)
    digest_id = add_digest("Counted", now=NOW, status=DigestStatus.SENDING)
    other = add_digest("Other", now=NOW, status=DigestStatus.SENDING)
    assert start_due_digests(NOW) == []
    steps: list[Callable[[], object]] = [
        lambda: enqueue_digest(digest_id, NOW),
        lambda: enqueue_digest(other, NOW),
        lambda: queue_message(
            DeliveryKind.TEST, None, NOW, to_address="editor@example.org", digest_id=digest_id
        ),
        lambda: claim_batch("w", NOW, 8, 60),
        lambda: Sender("w", backend_from_url(smtp_server.url), lambda: NOW).send_batch(
            db.session.scalars(select(Delivery.id).where(Delivery.claimed_by == "w")).all()
        ),
        lambda: skip_pending_for(ids[-1], "unsubscribed"),
        lambda: claim_batch("v", NOW, 2, 60),
        lambda: db.session.execute(
            Delivery.__table__.delete().where(Delivery.subscriber_id.in_(ids[:2]))
        ),
        lambda: db.session.execute(Subscriber.__table__.delete().where(Subscriber.id.in_(ids[:2]))),
        lambda: cancel_digest(db.session.get(Digest, digest_id), NOW),  # type: ignore[arg-type]
    ]
    for step in steps:
        step()
        db.session.commit()
        for digest in (digest_id, other):
            assert digest_counts(digest) == _counted(digest)
    counts = digest_counts(digest_id)
    assert counts[DeliveryStatus.SENT] > 0 and counts[DeliveryStatus.FAILED] == 1
    assert sum(counts.values()) == 10  # two subscribers' rows deleted, the test send not counted
