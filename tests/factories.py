"""Builders the tests share: rows in bulk, the e-mail world, worker processes, polling, API errors.

Plain functions and classes; the fixtures that wrap them live in conftest.py. Every builder that
stamps a time takes it as ``now``: tests of code given an injected ``now`` pass the same one,
tests of real processes pass ``utcnow()`` (the clock those processes read too).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import time_machine
from sqlalchemy import insert, make_url, select

from mailer.backends import Message
from mailer.emails import RenderCache, render_delivery
from mailer.extensions import db
from mailer.models import (
    Delivery,
    DeliveryKind,
    Digest,
    DigestFilm,
    DigestStatus,
    Film,
    Subscriber,
    SubscriberStatus,
)
from tests.smtp_server import Received

MAILER = str(Path(sys.executable).with_name("mailer"))


def is_postgres(url: str) -> bool:
    """Whether the suite runs on PostgreSQL."""
    return make_url(url).get_backend_name() == "postgresql"


def machine_now() -> datetime:
    """The machine's clock even under --clock-offset: what SpamAssassin or a database reads."""
    hatch = time_machine.escape_hatch
    return hatch.datetime.datetime.now(UTC) if hatch.is_travelling() else datetime.now(UTC)


# --- rows ---------------------------------------------------------------------------------------


def add_subscribers(
    count: int, *, now: datetime, prefix: str = "reader", **values: object
) -> list[int]:
    """Insert subscribers confirmed at ``now`` in bulk; return their ids."""
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


def add_digest(
    subject: str, *, now: datetime, status: DigestStatus = DigestStatus.SCHEDULED
) -> int:
    """A digest featuring one film, due since a day before ``now``."""
    film = db.session.scalar(select(Film).where(Film.slug == "a-state-of-mind"))
    if film is None:
        film = Film(slug="a-state-of-mind", title="A State of Mind", year=2004)
        db.session.add(film)
    digest = Digest(subject=subject, status=status, send_at=now - timedelta(days=1))
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


def emails_of(ids: list[int]) -> set[str]:
    """The addresses of these subscribers."""
    return set(db.session.scalars(select(Subscriber.email).where(Subscriber.id.in_(ids))))


# --- the e-mail world ---------------------------------------------------------------------------

WORLD_NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
TO_ADDRESS_KINDS = {
    DeliveryKind.TEST: "editor@example.org",
    DeliveryKind.ADDRESS_CONFIRMATION: "new-home@example.org",
    DeliveryKind.ADDRESS_CHANGED: "old-home@example.org",
}


@dataclass
class World:
    """A small catalogue, three kinds of subscriber and a digest featuring every kind of film.

    It is the world as of WORLD_NOW: the early film opened a day before, nothing is released yet.
    """

    public: Film
    early: Film
    soon: Film
    fan: Subscriber  # confirmed, wants early access
    plain: Subscriber  # confirmed, no early access
    pending: Subscriber
    digest: Digest


def add_world() -> World:
    """Insert the World's films, subscribers and digest."""
    public = Film(
        slug="a-state-of-mind",
        title="A State of Mind",
        year=2004,
        director="Daniel Gordon",
        description="Two young gymnasts train for the Mass Games.",
        watch_url="https://watch.example.org/a-state-of-mind",
    )
    early = Film(
        slug="early-film",
        title="The Early Film",
        release_date=date(2027, 1, 15),
        early_access_at=WORLD_NOW - timedelta(days=1),
        watch_url="https://watch.example.org/secret-early",
    )
    soon = Film(
        slug="soon-film",
        title="The Coming Film",
        release_date=date(2027, 3, 1),
        watch_url="https://watch.example.org/secret-soon",
    )
    fan = Subscriber(email="fan@example.org", status=SubscriberStatus.CONFIRMED, nonce="n-fan")
    plain = Subscriber(
        email="plain@example.org",
        status=SubscriberStatus.CONFIRMED,
        nonce="n-plain",
        wants_early_access=False,
    )
    pending = Subscriber(email="pending@example.org", nonce="n-pending")
    digest = Digest(
        subject="Three films this week",
        preheader="New on the site",
        intro_markdown="Hello **readers**, here is [our site](https://example.org/about).",
    )
    db.session.add_all([public, early, soon, fan, plain, pending, digest])
    db.session.flush()
    for position, film in enumerate([public, early, soon]):
        db.session.add(
            DigestFilm(
                digest_id=digest.id, film_id=film.id, position=position, note="Worth *seeing*."
            )
        )
    db.session.commit()
    return World(public, early, soon, fan, plain, pending, digest)


def delivery_for(
    kind: DeliveryKind, world: World, subscriber: Subscriber | None = None
) -> Delivery:
    """A journal row of one kind, as the engine would have queued it at WORLD_NOW."""
    reader = subscriber or world.fan
    row = Delivery(
        kind=kind,
        subscriber_id=None if kind == DeliveryKind.TEST else reader.id,
        digest_id=world.digest.id if kind in (DeliveryKind.DIGEST, DeliveryKind.TEST) else None,
        film_id=world.early.id if kind == DeliveryKind.EARLY_ACCESS else None,
        to_address=TO_ADDRESS_KINDS.get(kind),
        next_attempt_at=WORLD_NOW,
        created_at=WORLD_NOW,
    )
    db.session.add(row)
    db.session.flush()
    return row


def render(
    kind: DeliveryKind,
    world: World,
    subscriber: Subscriber | None = None,
    now: datetime = WORLD_NOW,
) -> Message:
    """Render one message of a kind, at WORLD_NOW unless told otherwise."""
    reader = subscriber or world.fan
    row = delivery_for(kind, world, reader)
    return render_delivery(row, None if kind == DeliveryKind.TEST else reader, RenderCache(), now)


# --- processes ----------------------------------------------------------------------------------


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


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll until check() holds (on the monotonic clock, which no test moves)."""
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


# --- the JSON API -------------------------------------------------------------------------------


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """The response is the API's JSON error with this status and code; returns the body."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["status"] == status and body["code"] == code
    assert isinstance(body["message"], str) and body["message"]
    assert set(body) <= {"status", "code", "message", "errors"}
    return body
