"""A worker killed mid-digest resends at most one small group per connection, same Message-IDs."""

from __future__ import annotations

import signal

import pytest
from flask import Flask

from mailer.models import DigestStatus, utcnow
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

RECIPIENTS = 2000
# The documented bound: a killed worker resends at most this many messages per SMTP connection.
RESEND_BOUND = 10
# The default claim size, so a group is not bounded by a small claim instead.
BATCH = {"MAILER_SEND_BATCH": "500"}


def assert_resends_bounded(
    smtp_server: ScriptedSMTPServer, subject: str, everyone: set[str], connections: int
) -> None:
    """Everyone got the digest; copies beyond the first are few and carry the first's Message-ID."""
    seen = by_recipient(smtp_server.received, subject)
    assert set(seen) == everyone
    resent = {rcpt: mids for rcpt, mids in seen.items() if len(mids) > 1}
    copies = sum(len(mids) - 1 for mids in resent.values())
    print(f"{copies} second copies after the kill")
    assert copies <= RESEND_BOUND * connections, f"{copies} second copies"
    for mids in resent.values():
        assert len(set(mids)) == 1, "a resend must carry the first copy's Message-ID"


@pytest.mark.postgres_only
@pytest.mark.usefixtures("postgres_only")
def test_sigkill_of_one_of_three_workers_resends_at_most_a_group(
    app: Flask, workers: Workers, smtp_server: ScriptedSMTPServer
) -> None:
    procs = [workers.start("worker", **BATCH) for _ in range(3)]
    wait_until(lambda: all("Scheduler started" in workers.log(p) for p in procs), 60, "workers")
    with app.app_context():
        everyone = emails_of(add_subscribers(RECIPIENTS, now=utcnow()))
        digest_id = add_digest("One of three killed", now=utcnow())
    smtp_server.wait_for(RECIPIENTS // 3, timeout=120)
    procs[1].send_signal(signal.SIGKILL)
    procs[1].wait()
    assert len(smtp_server.received) < RECIPIENTS, "the digest was sent before the kill"
    with app.app_context():
        wait_until(lambda: digest_status(digest_id) == DigestStatus.SENT, 180, "digest sent")
    assert_resends_bounded(smtp_server, "One of three killed", everyone, connections=1)


def test_sigkill_then_restart_resends_at_most_a_group_per_connection(
    app: Flask, workers: Workers, smtp_server: ScriptedSMTPServer
) -> None:
    with app.app_context():
        everyone = emails_of(add_subscribers(RECIPIENTS, now=utcnow()))
        digest_id = add_digest("Killed and restarted", now=utcnow())
    first = workers.start("worker", MAILER_SMTP_CONNECTIONS="2", **BATCH)
    smtp_server.wait_for(RECIPIENTS // 4, timeout=120)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert len(smtp_server.received) < RECIPIENTS, "the digest was sent before the kill"
    workers.start("worker", **BATCH)
    with app.app_context():
        wait_until(lambda: digest_status(digest_id) == DigestStatus.SENT, 180, "digest sent")
    assert_resends_bounded(smtp_server, "Killed and restarted", everyone, connections=2)
