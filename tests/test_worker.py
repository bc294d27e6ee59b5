"""The worker and `mailer deliver` as real processes, against a real SMTP server on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, insert, make_url, select

from mailer.extensions import db
from mailer.models import (
    Delivery,
    DeliveryStatus,
    Digest,
    DigestFilm,
    DigestStatus,
    Film,
    Subscriber,
    SubscriberStatus,
    Suppression,
)
from mailer.sending import skip_pending_for
from tests.smtp_server import Received, ScriptedSMTPServer

MAILER = str(Path(sys.executable).with_name("mailer"))


def is_postgres(url: str) -> bool:
    """Whether the suite runs on PostgreSQL."""
    return make_url(url).get_backend_name() == "postgresql"


@pytest.fixture
def smtp_server() -> Iterator[ScriptedSMTPServer]:
    server = ScriptedSMTPServer().start()
    yield server
    server.stop()


class Workers:
    """Starts `mailer` processes with the test's environment and stops them all at the end."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, **extra: str) -> subprocess.Popen[bytes]:
        """Start `mailer <args>` with extra environment variables."""
        with (self.logs / f"proc{len(self.procs)}.log").open("wb") as log:
            proc = subprocess.Popen(
                [MAILER, *args],
                env={**os.environ, **self.env, **extra},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        return proc

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        """What a process has written so far."""
        return (self.logs / f"proc{self.procs.index(proc)}.log").read_text()

    def stop_all(self) -> None:
        """Stop every process still running (SIGTERM, then SIGKILL)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for index in range(len(self.procs)):
            # Shown by pytest when the test failed.
            print(f"--- process {index}\n" + (self.logs / f"proc{index}.log").read_text()[-4000:])


@pytest.fixture
def workers(
    app: Flask, test_env: dict[str, str], smtp_server: ScriptedSMTPServer, tmp_path: Path
) -> Iterator[Workers]:
    """Worker processes on this test's database and SMTP server, with short engine timings."""
    env = {
        **test_env,
        "MAILER_MAIL_URL": smtp_server.url,
        "MAILER_RETRY_DELAY": "0.3",
        "MAILER_LEASE_SECONDS": "5",
        "MAILER_SEND_BATCH": "50",
    }
    group = Workers(env, tmp_path)
    yield group
    group.stop_all()


def add_subscribers(count: int, *, prefix: str = "reader", **values: object) -> list[int]:
    """Insert confirmed subscribers in bulk; return their ids."""
    now = datetime.now(UTC)
    rows = [
        {
            "email": f"{prefix}{i:05d}@example.org",
            "status": SubscriberStatus.CONFIRMED,
            "nonce": f"n{prefix}{i}",
            "wants_digest": True,
            "wants_early_access": True,
            "created_at": now,
            "confirmed_at": now,
            **values,
        }
        for i in range(count)
    ]
    db.session.execute(insert(Subscriber), rows)
    db.session.commit()
    return list(
        db.session.scalars(
            select(Subscriber.id).where(Subscriber.email.like(f"{prefix}%")).order_by(Subscriber.id)
        )
    )


def add_digest(subject: str, *, status: DigestStatus = DigestStatus.SCHEDULED) -> int:
    """A digest featuring one film, due now."""
    film = db.session.scalar(select(Film).where(Film.slug == "a-state-of-mind"))
    if film is None:
        film = Film(slug="a-state-of-mind", title="A State of Mind", year=2004)
        db.session.add(film)
    digest = Digest(subject=subject, status=status, send_at=datetime.now(UTC) - timedelta(1))
    digest.films = [DigestFilm(film=film, position=0)]
    db.session.add(digest)
    db.session.commit()
    return digest.id


def digest_status(digest_id: int) -> str:
    """The digest's status as committed right now."""
    db.session.rollback()
    status = db.session.scalar(select(Digest.status).where(Digest.id == digest_id))
    assert status is not None
    return status


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll until check() holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def by_recipient(received: list[Received], subject: str | None = None) -> dict[str, list[str]]:
    """Message-IDs received per recipient (of one subject, if given)."""
    seen: dict[str, list[str]] = defaultdict(list)
    for item in received:
        message = item.message
        if subject is not None and message["Subject"] != subject:
            continue
        for rcpt in item.rcpt_tos:
            seen[rcpt].append(message["Message-ID"])
    return seen


def emails_of(ids: list[int]) -> set[str]:
    """The addresses of these subscribers."""
    return set(db.session.scalars(select(Subscriber.email).where(Subscriber.id.in_(ids))))


def test_sigkill_mid_digest_then_restart_delivers_everyone_once(
    app: Flask, workers: Workers, smtp_server: ScriptedSMTPServer
) -> None:
    with app.app_context():
        ids = add_subscribers(2000)
        digest_id = add_digest("Killed halfway")
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
