"""`mailer worker --processes 2`: two claimers share a digest exactly once, SIGTERM stops them all,
and a child that dies is replaced."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

from flask import Flask
from sqlalchemy import select

from mailer.extensions import db
from mailer.models import Delivery, DigestStatus, utcnow
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

STARTED = re.compile(r"worker process (\d) started \(pid (\d+)\)")


def _children(log: str) -> dict[int, int]:
    """The latest pid of each worker process, from the supervisor's log."""
    return {int(index): int(pid) for index, pid in STARTED.findall(log)}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ")[1][0] != "Z"


def test_two_processes_send_a_digest_once_and_stop_together(
    app: Flask, workers: Workers, smtp_server: ScriptedSMTPServer
) -> None:
    with app.app_context():
        everyone = emails_of(add_subscribers(300, now=utcnow()))
        digest = add_digest("For two processes", now=utcnow())
    supervisor = workers.start("worker", "--processes", "2")
    with app.app_context():
        wait_until(lambda: digest_status(digest) == DigestStatus.SENT, 120, "digest sent")
        claimants = set(
            db.session.scalars(select(Delivery.claimed_by).where(Delivery.digest_id == digest))
        )
    seen = by_recipient(smtp_server.received, "For two processes")
    assert set(seen) == everyone
    assert all(len(mids) == 1 for mids in seen.values()), "someone got it twice"
    children = _children(workers.log(supervisor))
    assert len(children) == 2 and supervisor.pid not in children.values()
    # Rows were claimed by the children only (claimed_by is host:pid, maybe with a thread suffix).
    assert {int(n.split(":")[1].split("/")[0]) for n in claimants if n} <= set(children.values())
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=60) == 0
    assert not any(_alive(pid) for pid in children.values())


def test_a_killed_child_is_replaced(app: Flask, workers: Workers) -> None:
    supervisor = workers.start("worker", "--processes", "2")
    wait_until(lambda: len(_children(workers.log(supervisor))) == 2, 60, "two children")
    first = _children(workers.log(supervisor))
    os.kill(first[1], signal.SIGKILL)
    wait_until(
        lambda: _children(workers.log(supervisor)).get(1, first[1]) != first[1],
        60,
        "child 1 restarted",
    )
    again = _children(workers.log(supervisor))
    assert again[0] == first[0] and _alive(again[1])
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=60) == 0
    assert not any(_alive(pid) for pid in again.values())


def test_children_that_keep_failing_at_start_end_the_supervisor(
    app: Flask, workers: Workers, tmp_path: Path
) -> None:
    # Only the children run as `python -c …`: make exactly those exit at once.
    (tmp_path / "sitecustomize.py").write_text(
        "import os, sys\nif sys.argv[:1] == ['-c']:\n    os._exit(3)\n"
    )
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH", "")) if p)
    supervisor = workers.start("worker", "--processes", "2", PYTHONPATH=path)
    assert supervisor.wait(timeout=60) == 1
    log = workers.log(supervisor)
    assert log.count("failed 3 times at start") == 1, log
    assert "Traceback" not in log
