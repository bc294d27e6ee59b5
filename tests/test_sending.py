"""The delivery journal in process: enqueueing, claims, the digest lifecycle, rate and retries."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import func, literal, select

from mailer.backends import backend_from_url
from mailer.extensions import db
from mailer.models import (
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Digest,
    DigestStatus,
    Film,
    SendWindow,
    Subscriber,
    SubscriberStatus,
    Suppression,
    SuppressionReason,
)
from mailer.sending import (
    InvalidTransition,
    Sender,
    SendRate,
    cancel_digest,
    claim_batch,
    digest_counts,
    email_hash,
    enqueue_digest,
    enqueue_early_access_alerts,
    finish_digests,
    pause_digest,
    queue_message,
    resume_digest,
    retry_delay,
    schedule_digest,
    sql_email_hash,
    start_due_digests,
    suppress,
)
from tests.smtp_server import ScriptedSMTPServer
from tests.test_worker import add_digest, add_subscribers

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
    eligible = set(add_subscribers(5))
    add_subscribers(2, prefix="pending", status=SubscriberStatus.PENDING)
    add_subscribers(2, prefix="gone", status=SubscriberStatus.UNSUBSCRIBED)
    add_subscribers(2, prefix="nodigest", wants_digest=False)
    (bounced,) = add_subscribers(1, prefix="bounced")
    suppress("  BOUNCED00000@example.org", SuppressionReason.HARD_BOUNCE, NOW)
    digest_id = add_digest("Eligible", status=DigestStatus.SENDING)
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
    add_subscribers(3)
    add_subscribers(2, prefix="noalerts", wants_early_access=False)
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
    add_subscribers(10)
    digest_id = add_digest("Claimed")
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
    add_subscribers(4)
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
    add_subscribers(2)
    digest_id = add_digest("Finished")
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
def test_send_rate_is_shared_by_every_worker() -> None:
    clock = [1000.2]
    workers = [SendRate(5, clock=lambda: clock[0]) for _ in range(3)]
    granted = [w._take(1000, 3) for w in workers]
    assert sum(granted) == 5
    assert granted == [3, 2, 0]
    clock[0] = 1001.0
    assert workers[2].acquire(10) == 5
    assert db.session.scalar(select(SendWindow.used).where(SendWindow.window == 1001)) >= 5
    slow = SendRate(0.5)
    assert slow.window == 2 and slow.allowance == 1


def test_retry_delay_grows_with_jitter() -> None:
    for attempts in (1, 2, 5):
        for _ in range(50):
            delay = retry_delay(attempts, 10)
            full = 10 * 2 ** (attempts - 1)
            assert full / 2 <= delay <= full
    assert retry_delay(100, 10) <= 6 * 3600


@pytest.fixture
def smtp_server() -> Iterator[ScriptedSMTPServer]:
    server = ScriptedSMTPServer().start()
    yield server
    server.stop()


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
    (subscriber_id,) = add_subscribers(1, prefix="editor")
    digest_id = add_digest("Draft", status=DigestStatus.DRAFT)
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
