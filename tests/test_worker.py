"""The worker and `mailer deliver` as real processes, against a real SMTP server on loopback."""

from __future__ import annotations

import signal
import time
from collections import Counter

import pytest
from flask import Flask
from sqlalchemy import func, select

from mailer.extensions import db
from mailer.journal import skip_pending_for
from mailer.models import (
    Delivery,
    DeliveryStatus,
    Digest,
    DigestStatus,
    Subscriber,
    SubscriberStatus,
    Suppression,
    utcnow,
)
from tests.factories import (
    Workers,
    add_digest,
    add_subscribers,
    by_recipient,
    digest_status,
    emails_of,
    wait_until,
)
from tests.smtp_server import ScriptedSMTPServer


def test_sigkill_mid_digest_then_restart_delivers_everyone_once(
    app: Flask, workers: Workers, smtp_server: ScriptedSMTPServer
) -> None:
    with app.app_context():
        ids = add_subscribers(2000, now=utcnow())
        digest_id = add_digest("Killed halfway", now=utcnow())
        everyone = emails_of(ids)
    first = workers.start("worker")
    smtp_server.wait_for(400, timeout=120)
    first.send_signal(signal.SIGKILL)
    first.wait()
    with app.app_context():
        in_flight = db.session.scalar(
            select(func.count())
            .select_from(Delivery)
            .where(Delivery.status == DeliveryStatus.CLAIMED)
        )
        assert in_flight is not None
        sent_before = len(smtp_server.received)
        assert sent_before < 2000, "the worker finished before it was killed"
        workers.start("worker")
        wait_until(lambda: digest_status(digest_id) == DigestStatus.SENT, 180, "digest sent")
        counts = Counter(
            dict(
                db.session.execute(
                    select(Delivery.status, func.count())
                    .where(Delivery.digest_id == digest_id)
                    .group_by(Delivery.status)
                ).all()
            )
        )
    seen = by_recipient(smtp_server.received, "Killed halfway")
    assert set(seen) == everyone
    duplicates = {rcpt: mids for rcpt, mids in seen.items() if len(mids) > 1}
    assert sum(len(m) - 1 for m in duplicates.values()) <= in_flight
    for mids in duplicates.values():
        assert len(set(mids)) == 1, "a resend must carry the first copy's Message-ID"
    assert counts == {DeliveryStatus.SENT: 2000}


@pytest.mark.postgres_only
@pytest.mark.usefixtures("postgres_only")
def test_two_then_three_workers_share_a_digest_exactly_once(
    app: Flask, workers: Workers, smtp_server: ScriptedSMTPServer
) -> None:
    with app.app_context():
        everyone = emails_of(add_subscribers(600, now=utcnow()))
        first = add_digest("For two workers", now=utcnow())
    # A shared rate spreads each digest over several ticks: unpaced, one process can send all
    # 600 before the others wake on a busy machine, and the sharing below would not be shown.
    paced = {"MAILER_SEND_RATE": "100"}
    for _ in range(2):
        workers.start("worker", MAILER_SMTP_CONNECTIONS="2", **paced)
    with app.app_context():
        wait_until(lambda: digest_status(first) == DigestStatus.SENT, 120, "first digest sent")
        second = add_digest("For three workers", now=utcnow())
    workers.start("worker", **paced)
    with app.app_context():
        wait_until(lambda: digest_status(second) == DigestStatus.SENT, 120, "second digest sent")
        claimants = set(
            db.session.scalars(select(Delivery.claimed_by).where(Delivery.digest_id == second))
        )
    for subject in ("For two workers", "For three workers"):
        seen = by_recipient(smtp_server.received, subject)
        assert set(seen) == everyone
        assert all(len(mids) == 1 for mids in seen.values()), "someone got it twice"
    # The work really was shared: more than one process claimed rows of the second digest.
    assert len({name.split("/")[0] for name in claimants if name}) > 1


def test_temporary_failures_are_retried_and_delivered_once(
    app: Flask, workers: Workers, smtp_server: ScriptedSMTPServer
) -> None:
    busy = {"reader00003@example.org", "reader00007@example.org"}
    smtp_server.add_rule(lambda rcpt: "451 4.3.0 try again later" if rcpt in busy else None)
    with app.app_context():
        everyone = emails_of(add_subscribers(20, now=utcnow()))
        digest_id = add_digest("Retried", now=utcnow())
    workers.start("worker")
    with app.app_context():

        def retried() -> bool:
            db.session.rollback()
            rows = db.session.execute(
                select(Delivery.attempts, Delivery.last_error)
                .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
                .where(Subscriber.email.in_(busy))
            ).all()
            return len(rows) == 2 and all(a >= 2 and "451" in e for a, e in rows)

        wait_until(retried, 60, "the 451s to be retried")
        busy.clear()
        wait_until(lambda: digest_status(digest_id) == DigestStatus.SENT, 60, "digest sent")
        assert db.session.scalar(select(func.count()).select_from(Suppression)) == 0
    seen = by_recipient(smtp_server.received, "Retried")
    assert set(seen) == everyone
    assert all(len(mids) == 1 for mids in seen.values())


def test_unknown_recipient_fails_at_once_and_is_suppressed(
    app: Flask, workers: Workers, smtp_server: ScriptedSMTPServer
) -> None:
    gone = "reader00002@example.org"
    asked: list[str] = []

    def refuse(rcpt: str) -> str | None:
        asked.append(rcpt)
        return "550 5.1.1 no such user" if rcpt == gone else None

    smtp_server.add_rule(refuse)
    with app.app_context():
        add_subscribers(10, now=utcnow())
        digest_id = add_digest("Bounced", now=utcnow())
    workers.start("worker")
    with app.app_context():
        wait_until(lambda: digest_status(digest_id) == DigestStatus.SENT, 60, "digest sent")
        failed = db.session.execute(
            select(Delivery.status, Delivery.attempts, Delivery.last_error)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Subscriber.email == gone)
        ).one()
        suppressed = db.session.execute(select(Suppression.email, Suppression.reason)).all()
    assert failed.status == DeliveryStatus.FAILED
    assert failed.attempts == 1
    assert "5.1.1" in failed.last_error
    assert suppressed == [(gone, "hard_bounce")]
    time.sleep(1.5)  # several more ticks: it must not be tried again
    assert asked.count(gone) == 1
    assert gone not in by_recipient(smtp_server.received)
    assert len(by_recipient(smtp_server.received, "Bounced")) == 9


def test_policy_refusal_pauses_the_digest_and_blames_nobody(
    app: Flask, workers: Workers, smtp_server: ScriptedSMTPServer
) -> None:
    smtp_server.add_rule(
        lambda rcpt: (
            "550 5.7.26 unauthenticated mail is prohibited" if rcpt >= "reader00010" else None
        )
    )
    with app.app_context():
        add_subscribers(60, now=utcnow())
        digest_id = add_digest("Refused by policy", now=utcnow())
    workers.start("worker")
    with app.app_context():
        wait_until(lambda: digest_status(digest_id) == DigestStatus.PAUSED, 60, "digest paused")
        time.sleep(1.5)  # the worker keeps ticking; a paused digest must stay untouched
        db.session.rollback()
        digest = db.session.get(Digest, digest_id)
        assert digest is not None
        assert "5.7.26" in digest.pause_reason
        counts = dict(
            db.session.execute(
                select(Delivery.status, func.count())
                .where(Delivery.digest_id == digest_id)
                .group_by(Delivery.status)
            ).all()
        )
        assert db.session.scalar(select(func.count()).select_from(Suppression)) == 0
    assert counts.get(DeliveryStatus.FAILED, 0) == 0
    assert counts.get(DeliveryStatus.CLAIMED, 0) == 0
    assert counts[DeliveryStatus.SENT] == len(by_recipient(smtp_server.received)) <= 10
    assert counts[DeliveryStatus.QUEUED] == 60 - counts[DeliveryStatus.SENT]


def test_unsubscribe_while_sending_stops_mail_to_that_address(
    app: Flask, workers: Workers, smtp_server: ScriptedSMTPServer
) -> None:
    with app.app_context():
        ids = add_subscribers(300, now=utcnow())
        digest_id = add_digest("Leaving midway", now=utcnow())
    # A modest rate keeps the digest sending while the test unsubscribes people.
    workers.start("worker", MAILER_SEND_RATE="60")
    smtp_server.wait_for(40, timeout=60)
    # Not reached yet (deliveries go out in id order); the furthest first, so that at least
    # those are unsubscribed well before the worker gets to them.
    leaving = ids[:-121:-4]
    unsubscribed_at: dict[str, int] = {}
    with app.app_context():
        for subscriber_id in leaving:
            subscriber = db.session.get(Subscriber, subscriber_id)
            assert subscriber is not None
            subscriber.status = SubscriberStatus.UNSUBSCRIBED
            subscriber.unsubscribed_at = utcnow()
            skip_pending_for(subscriber_id, "unsubscribed")
            db.session.commit()
            # Anything the server receives from now on came after the unsubscribe returned.
            unsubscribed_at[subscriber.email] = len(smtp_server.received)
            time.sleep(0.05)
        wait_until(lambda: digest_status(digest_id) == DigestStatus.SENT, 120, "digest sent")
        first_to_leave = emails_of(leaving[:1])
        stayed = emails_of(ids) - emails_of(leaving)
    received = smtp_server.received
    for address, mark in unsubscribed_at.items():
        late = [item for item in received[mark:] if address in item.rcpt_tos]
        assert late == [], f"{address} was mailed after unsubscribing"
    seen = by_recipient(received, "Leaving midway")
    assert first_to_leave.isdisjoint(seen)
    assert stayed <= set(seen)


def test_deliver_sends_everything_due_and_exits(
    app: Flask, workers: Workers, smtp_server: ScriptedSMTPServer
) -> None:
    with app.app_context():
        everyone = emails_of(add_subscribers(30, now=utcnow()))
        digest_id = add_digest("Once, by cron", now=utcnow())
    proc = workers.start("deliver")
    assert proc.wait(timeout=120) == 0, workers.log(proc)
    output = workers.log(proc)
    assert "Sending" in output
    assert "30 sent" in output
    assert set(by_recipient(smtp_server.received, "Once, by cron")) == everyone
    with app.app_context():
        assert digest_status(digest_id) == DigestStatus.SENT
    again = workers.start("deliver")
    assert again.wait(timeout=60) == 0
    assert "0 sent" in workers.log(again)
    assert len(smtp_server.received) == 30


@pytest.mark.postgres_only
@pytest.mark.usefixtures("postgres_only")
def test_send_rate_caps_all_workers_together(
    app: Flask, workers: Workers, smtp_server: ScriptedSMTPServer
) -> None:
    procs = [workers.start("worker", "--processes", "1", MAILER_SEND_RATE="25") for _ in range(2)]
    # Both are up before there is anything to send, so both take a share.
    wait_until(lambda: all("Scheduler started" in workers.log(p) for p in procs), 60, "workers")
    with app.app_context():
        everyone = emails_of(add_subscribers(150, now=utcnow()))
        digest_id = add_digest("Throttled", now=utcnow())
    with app.app_context():
        wait_until(lambda: digest_status(digest_id) == DigestStatus.SENT, 120, "digest sent")
        first, last = db.session.execute(
            select(func.min(Delivery.sent_at), func.max(Delivery.sent_at)).where(
                Delivery.digest_id == digest_id
            )
        ).one()
        senders = set(db.session.scalars(select(Delivery.claimed_by).distinct()))
    # 150 messages at 25 per one-second window need six windows however many workers share
    # them: more than four seconds from the first send to the last (the first may go at the end
    # of its window). Two workers each limited on its own would need three: at most three seconds.
    assert (last - first).total_seconds() > 3.5
    assert len(senders) == 2
    seen = by_recipient(smtp_server.received, "Throttled")
    assert set(seen) == everyone
    assert all(len(mids) == 1 for mids in seen.values())
