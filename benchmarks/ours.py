"""Ours: a digest of ten films to N confirmed subscribers through the whole product path.

enqueue (one INSERT … SELECT) → claim (FOR UPDATE SKIP LOCKED) → personalise
(emails.render_delivery) → send (the smtp backend, one connection per worker process) → journal
(status, sent_at, message_id).

The sending engine (mailer/sending.py: enqueue, claim, deliver) is written on another branch. Until
it lands, the four functions marked ENGINE below stand in for it, written against the current
models; each names the engine function that replaces it. Everything else here (setup, timing,
worker processes, peak RSS) stays as it is.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from .common import (
    ROOT,
    Row,
    Sink,
    app_env,
    insert_subscribers_sql,
    mailer_cli,
    seed_digest_sql,
    throwaway_pg,
    wait_with_rss,
)

BATCH = 500
LEASE = timedelta(minutes=5)


# --- ENGINE: the stand-ins for mailer/sending.py -----------------------------------------------


def enqueue_digest(digest_id: int, now: datetime) -> None:
    """ENGINE → sending.enqueue_digest: one delivery per eligible subscriber, set-based."""
    # (the rowcount of INSERT … SELECT is not reported here; the caller counts afterwards)
    from sqlalchemy import insert, literal, select

    from mailer.extensions import db
    from mailer.models import (
        Delivery,
        DeliveryKind,
        DeliveryStatus,
        Subscriber,
        SubscriberStatus,
        UTCDateTime,
    )

    at = literal(now, UTCDateTime())
    eligible = select(
        literal(DeliveryKind.DIGEST.value),
        literal(DeliveryStatus.QUEUED.value),
        literal(digest_id),
        Subscriber.id,
        literal(0),
        at,
        literal(""),
        at,
    ).where(Subscriber.status == SubscriberStatus.CONFIRMED, Subscriber.wants_digest.is_(True))
    columns = [
        "kind", "status", "digest_id", "subscriber_id", "attempts", "next_attempt_at",
        "last_error", "created_at",
    ]  # fmt: skip
    db.session.execute(insert(Delivery.__table__).from_select(columns, eligible))


def claim_batch(worker: str, now: datetime, limit: int) -> list[int]:
    """ENGINE → sending.claim: lease due deliveries to this worker (SKIP LOCKED on PostgreSQL)."""
    from sqlalchemy import select, update

    from mailer.extensions import db
    from mailer.models import Delivery, DeliveryStatus

    # Lock first, then update by the ids: "UPDATE … WHERE id IN (subquery)" is planned as a
    # sequential scan of the whole journal once it is large.
    due = (
        select(Delivery.id)
        .where(Delivery.status == DeliveryStatus.QUEUED, Delivery.next_attempt_at <= now)
        .order_by(Delivery.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list(db.session.scalars(due))
    if not ids:
        return []
    db.session.execute(
        update(Delivery)
        .where(Delivery.id.in_(ids))
        .values(
            status=DeliveryStatus.CLAIMED,
            claimed_by=worker,
            lease_until=now + LEASE,
            attempts=Delivery.attempts + 1,
        )
        .execution_options(synchronize_session=False)
    )
    return ids


class NullBackend:
    """A backend that accepts every message and does nothing: the database side alone."""

    def __enter__(self) -> Self:
        """No connection to open."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Nothing to close."""

    def send(self, message: Any) -> None:
        """Drop the message."""


def deliver_batch(ids: list[int], backend: Any, cache: Any, now: datetime, render: bool) -> int:
    """ENGINE → sending.deliver: personalise, send and journal claimed deliveries; return sent."""
    from sqlalchemy import select

    from mailer.backends.base import DeliveryFailure
    from mailer.emails import render_delivery
    from mailer.extensions import db
    from mailer.models import Delivery, DeliveryStatus, Subscriber

    if not render:
        return journal_without_sending(ids, now)
    rows = db.session.execute(
        select(Delivery, Subscriber)
        .outerjoin(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.id.in_(ids))
        .order_by(Delivery.id)
    ).all()
    sent = 0
    for delivery, subscriber in rows:
        try:
            backend.send(render_delivery(delivery, subscriber, cache))
        except DeliveryFailure as exc:
            delivery.status = DeliveryStatus.FAILED
            delivery.last_error = str(exc)
            continue
        delivery.status = DeliveryStatus.SENT
        delivery.sent_at = now
        delivery.lease_until = None
        sent += 1
    return sent


def journal_without_sending(ids: list[int], now: datetime) -> int:
    """ENGINE → the database side of sending.deliver: read what rendering needs, journal as sent.

    Set-based: one SELECT of the recipients, one UPDATE with a Message-ID derived from the row.
    """
    from sqlalchemy import String, literal, select, update

    from mailer.extensions import db
    from mailer.models import Delivery, DeliveryStatus, Subscriber

    recipients = db.session.execute(
        select(Delivery.id, Subscriber.email, Subscriber.nonce)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.id.in_(ids))
    ).all()
    db.session.execute(
        update(Delivery)
        .where(Delivery.id.in_(ids))
        .values(
            status=DeliveryStatus.SENT,
            sent_at=now,
            lease_until=None,
            message_id=literal("<d") + Delivery.id.cast(String) + literal("@bench.example>"),
        )
        .execution_options(synchronize_session=False)
    )
    return len(recipients)


# --- the worker process ------------------------------------------------------------------------


def worker_main(argv: list[str]) -> int:
    """A worker process: start the app, wait for "go" on stdin, send until nothing is due."""
    parser = argparse.ArgumentParser(prog="benchmarks.ours worker")
    parser.add_argument("--name", default="w0")
    parser.add_argument("--null", action="store_true", help="no rendering, null backend")
    parser.add_argument("--max-seconds", type=float, default=0.0)
    parser.add_argument("--batch", type=int, default=BATCH)
    args = parser.parse_args(argv)

    from mailer import create_app
    from mailer.backends import backend_from_url
    from mailer.emails import RenderCache
    from mailer.extensions import db

    app = create_app()
    with app.app_context():
        backend: Any = (
            NullBackend() if args.null else backend_from_url(app.config["MAILER_MAIL_URL"])
        )
        print("ready", flush=True)
        sys.stdin.readline()
        start = time.perf_counter()
        sent = 0
        with backend:
            while True:
                now = datetime.now(UTC)
                ids = claim_batch(args.name, now, args.batch)
                db.session.commit()
                if not ids:
                    break
                # A cache per batch: committing expires what it holds.
                sent += deliver_batch(ids, backend, RenderCache(), now, render=not args.null)
                db.session.commit()
                db.session.expunge_all()
                if args.max_seconds and time.perf_counter() - start > args.max_seconds:
                    break
        elapsed = time.perf_counter() - start
    from .common import peak_rss_kib

    report = {"sent": sent, "seconds": elapsed, "vm_hwm_kib": peak_rss_kib(os.getpid())}
    print(json.dumps(report), flush=True)
    return 0


# --- orchestration -----------------------------------------------------------------------------


@contextlib.contextmanager
def product_app(database_url: str, mail_url: str, instance: Path) -> Iterator[Any]:
    """The mailer app on a database, migrated with `mailer db upgrade`."""
    env = app_env(database_url, mail_url, instance)
    subprocess.run([*mailer_cli(), "db", "upgrade"], env=env, check=True, capture_output=True)
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        from mailer import create_app

        app = create_app()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    with app.app_context():
        yield app
        from mailer.extensions import db

        db.session.remove()
        db.engine.dispose()


def seed(count: int, *, vary: bool = False) -> int:
    """The ten films, a digest featuring them, and `count` confirmed subscribers; the digest id."""
    from sqlalchemy import select, text

    from mailer.extensions import db
    from mailer.models import Digest

    seed_digest_sql()
    db.session.execute(text(insert_subscribers_sql(count, vary=vary)))
    db.session.commit()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    return int(db.session.scalars(select(Digest.id)).one())


def start_workers(env: dict[str, str], count: int, extra: list[str]) -> list[subprocess.Popen[str]]:
    """Start worker processes and wait until each has its app up."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks.ours", "worker", "--name", f"w{i}", *extra],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(count)
    ]
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"worker did not start: {line!r}")
    return procs


def go(procs: list[subprocess.Popen[str]]) -> None:
    """Let the workers start sending."""
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()


def finish(procs: list[subprocess.Popen[str]], timeout: float) -> list[dict[str, Any]]:
    """Wait for the workers; their reports with each one's peak RSS in KiB."""
    reports = []
    for proc in procs:
        assert proc.stdout is not None
        code, rss = wait_with_rss(proc, timeout)
        output = proc.stdout.read()
        if code != 0:
            raise RuntimeError(f"worker failed with exit code {code}")
        report = json.loads(output.strip().splitlines()[-1])
        report["peak_rss_kib"] = max(rss, report.get("vm_hwm_kib", 0))
        reports.append(report)
    return reports


def send_digest(
    sink_url: str, count: int, connections: int, timeout: float, *, null: bool = False
) -> dict[str, Any]:
    """Enqueue a digest to `count` subscribers and send it with `connections` workers; timings."""
    with (
        tempfile.TemporaryDirectory(prefix="mailer-ours-") as tmp,
        throwaway_pg("mailer_bench_ours") as url,
        product_app(url, sink_url, Path(tmp)) as _app,
    ):
        from mailer.extensions import db

        digest_id = seed(count)
        env = app_env(url, sink_url, Path(tmp))
        # Small enough batches that every worker gets a share of a small list.
        batch = max(20, min(BATCH, count // (connections * 10)))
        extra = ["--batch", str(batch), *(["--null"] if null else [])]
        procs = start_workers(env, connections, extra)
        try:
            start = time.perf_counter()
            enqueue_digest(digest_id, datetime.now(UTC))
            db.session.commit()
            enqueued = time.perf_counter() - start
            go(procs)
            reports = finish(procs, timeout)
            elapsed = time.perf_counter() - start
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
        sent = sum(r["sent"] for r in reports)
        queued = count_deliveries(digest_id)
        if sent != count or queued != count:  # every message accounted for, or no figure
            raise RuntimeError(f"queued {queued}, sent {sent} of {count}")
        return {
            "count": count,
            "connections": connections,
            "seconds": elapsed,
            "enqueue_seconds": enqueued,
            "peak_rss_kib": max(r["peak_rss_kib"] for r in reports),
            "message_bytes": message_size(),
        }


def count_deliveries(digest_id: int) -> int:
    """How many deliveries the digest has."""
    from sqlalchemy import func, select

    from mailer.extensions import db
    from mailer.models import Delivery

    return int(db.session.scalar(select(func.count()).where(Delivery.digest_id == digest_id)) or 0)


def message_size() -> int:
    """Bytes of one digest as the current emails module renders it."""
    from sqlalchemy import select

    from mailer.emails import RenderCache, render_delivery
    from mailer.extensions import db
    from mailer.models import Delivery, Subscriber

    delivery, subscriber = db.session.execute(
        select(Delivery, Subscriber).join(Subscriber, Subscriber.id == Delivery.subscriber_id)
    ).first() or (None, None)
    if delivery is None:
        return 0
    size = len(render_delivery(delivery, subscriber, RenderCache()).data)
    db.session.rollback()
    return size


def run(sink: Sink, count: int, connections: list[int], timeout: float) -> list[Row]:
    """Messages per second of the product path at each connection count."""
    rows = []
    for n in connections:
        r = send_digest(sink.url, count, n, timeout)
        rows.append(
            Row(
                "ours",
                f"ours: enqueue → claim → render → send → journal, {n} connection"
                + ("s" if n > 1 else ""),
                count / r["seconds"],
                "msg/s",
                f"{count} messages of {r['message_bytes'] // 1024} KiB; enqueue"
                f" {r['enqueue_seconds'] * 1000:.0f} ms; {n} worker process"
                + ("es" if n > 1 else ""),
                r,
                key=f"ours:{n}",
            )
        )
    return rows


def memory(sink: Sink, sizes: list[int], timeout: float, *, render: bool = True) -> list[Row]:
    """Peak RSS of one worker process sending the digest to each list size.

    With render=False the worker claims and journals without rendering or sending (used when the
    render path is too slow to send the larger list within the run's time budget).
    """
    rows = []
    for size in sizes:
        r = send_digest(sink.url, size, 1, timeout, null=not render)
        how = "rendered and sent" if render else "claimed and journaled, null backend"
        rows.append(
            Row(
                "memory",
                f"worker peak RSS, {size:,} subscribers",
                r["peak_rss_kib"] / 1024,
                "MiB",
                f"{how} at {size / r['seconds']:.0f}/s; target < 150 MiB",
                r,
                key=f"memory:{size}",
            )
        )
    if len(rows) == 2 and rows[0].value and rows[1].value:
        rows[1].note += f"; {rows[1].value / rows[0].value:.2f} x the smaller list"
    return rows


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        raise SystemExit(worker_main(sys.argv[2:]))
    raise SystemExit("usage: python -m benchmarks.ours worker [--null] [--max-seconds S]")
