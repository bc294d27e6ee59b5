"""MAILER_SEND_RATE holds over every window of a second or more, across worker processes."""

from __future__ import annotations

from bisect import bisect_left

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

RATE = 40
COUNT = 200
# The server stamps a message when it accepts it: its slot plus its rendering, the SMTP exchange
# and the scheduling of a busy machine, which vary from message to message by up to this much.
# So each window is this much shorter than the whole seconds its allowance is for.
JITTER = 0.1


def busiest(stamps: list[float], seconds: float) -> int:
    """The most stamps in any window [t, t + seconds) (the busiest one starts at a stamp)."""
    return max(bisect_left(stamps, start + seconds) - i for i, start in enumerate(stamps))


@pytest.mark.postgres_only
@pytest.mark.usefixtures("postgres_only")
def test_send_rate_holds_over_every_window_across_two_workers(
    app: Flask, workers: Workers, smtp_server: ScriptedSMTPServer
) -> None:
    procs = [workers.start("worker", MAILER_SEND_RATE=str(RATE)) for _ in range(2)]
    wait_until(lambda: all("Scheduler started" in workers.log(p) for p in procs), 60, "workers")
    with app.app_context():
        everyone = emails_of(add_subscribers(COUNT, now=utcnow()))
        digest_id = add_digest("Paced", now=utcnow())
        wait_until(lambda: digest_status(digest_id) == DigestStatus.SENT, 120, "digest sent")
    seen = by_recipient(smtp_server.received, "Paced")
    assert set(seen) == everyone
    assert all(len(mids) == 1 for mids in seen.values())
    assert len({item.peer for item in smtp_server.received}) >= 2, "both workers sent"
    stamps = sorted(item.accepted_at for item in smtp_server.received)
    for seconds in (1, 2, 3):
        assert busiest(stamps, seconds - JITTER) <= RATE * seconds, f"{seconds} s windows"
    # Not slower than the rate either: N messages take (N - 1) / rate seconds, give or take.
    took = stamps[-1] - stamps[0]
    assert (COUNT - 1) / RATE - JITTER <= took <= (COUNT - 1) / RATE + 1.5
