"""Ours: a digest of ten films to N confirmed subscribers through the whole product path.

The engine's own functions, nothing standing in for them: digests.start_due_digests (enqueue, one
INSERT … SELECT, and the digest marked sending) → scheduler.send_due in each worker process, as
every tick of `mailer worker` runs it: sending.claim_batch (FOR UPDATE SKIP LOCKED) →
Sender.send_batch (re-check under lock, personalise from the pre-rendered digest, send through the
smtp backend, journal each group, at most 10 messages or about 50 ms, in one commit) →
digests.finish_digests.

Connections: the product opens MAILER_SMTP_CONNECTIONS connections per worker process (one thread
each), and any number of worker processes may run. The benchmark runs the same: `processes`
worker processes sharing the connection count. Memory is measured on `mailer deliver` run as a
subprocess, peak RSS from /proc VmHWM.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mailer.backends.base import SessionlessBackend

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


class NullBackend(SessionlessBackend):
    """A backend that accepts every message and does nothing: the database side alone."""

    def send(self, message: Any) -> None:
        """Drop the message."""


# --- the worker process ------------------------------------------------------------------------


def worker_main(argv: list[str]) -> int:
    """A worker process: start the app, wait for "go" on stdin, run the engine's send loop.

    The loop is scheduler.send_due, what every tick of `mailer worker` and `mailer deliver`
    run: claim_batch, then Sender.send_batch (re-check, personalise, send, journal) on
    MAILER_SMTP_CONNECTIONS parallel connections, until nothing is due or the budget is spent.
    """
    parser = argparse.ArgumentParser(prog="benchmarks.ours worker")
    parser.add_argument("--name", default="w0")
    parser.add_argument("--null", action="store_true", help="a backend that drops every message")
    parser.add_argument("--max-seconds", type=float, default=0.0)
    args = parser.parse_args(argv)

    from mailer import create_app
    from mailer.scheduler import send_due

    app = create_app()
    # One log line per batch is the product's; the run's output stays readable without them.
    logging.getLogger("mailer.sending").setLevel(logging.WARNING)
    if args.null:
        # send_due's first connection uses the app's backend; --null runs with one connection.
        app.extensions["mailer.backend"] = NullBackend()
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.perf_counter()
    stats = send_due(app, f"bench-{args.name}", args.max_seconds or float("inf"))
    elapsed = time.perf_counter() - start
    from .common import peak_rss_kib

    report = {
        "sent": stats.sent,
        "failed": stats.failed,
        "skipped": stats.skipped,
        "retried": stats.retried,
        "seconds": elapsed,
        "vm_hwm_kib": peak_rss_kib(os.getpid()),
    }
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
    from sqlalchemy import select, text, update

    from mailer.extensions import db
    from mailer.models import Digest, DigestStatus

    seed_digest_sql()
    db.session.execute(text(insert_subscribers_sql(count, vary=vary)))
    # Scheduled for now: the engine's start_due_digests enqueues it and marks it sending.
    db.session.execute(
        update(Digest).values(status=DigestStatus.SCHEDULED, send_at=datetime.now(UTC))
    )
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


def split(connections: int, processes: int) -> list[int]:
    """MAILER_SMTP_CONNECTIONS of each worker process, so that they add up to `connections`."""
    processes = max(1, min(processes, connections))
    return [connections // processes + (i < connections % processes) for i in range(processes)]


def send_digest(
    sink_url: str,
    count: int,
    connections: int,
    timeout: float,
    *,
    processes: int = 1,
    null: bool = False,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Start a scheduled digest to `count` subscribers and send it on `connections`; timings.

    Timed from start_due_digests (enqueue, digest marked sending) through the workers' send
    loops to finish_digests (digest marked sent); worker start-up is not included.
    """
    from mailer.digests import finish_digests, start_due_digests
    from mailer.extensions import db
    from mailer.journal import digest_counts

    with (
        tempfile.TemporaryDirectory(prefix="mailer-ours-") as tmp,
        throwaway_pg("mailer_bench_ours") as url,
        product_app(url, sink_url, Path(tmp)) as _app,
    ):
        digest_id = seed(count)
        env = {**app_env(url, sink_url, Path(tmp)), **(extra_env or {})}
        procs = []
        for index, n in enumerate(split(connections, processes)):
            worker_env = {**env, "MAILER_SMTP_CONNECTIONS": str(n)}
            procs += start_workers(worker_env, 1, ["--name", f"p{index}"])
        try:
            start = time.perf_counter()
            start_due_digests(datetime.now(UTC))
            enqueued = time.perf_counter() - start
            go(procs)
            reports = finish(procs, timeout)
            finished = finish_digests(datetime.now(UTC))
            elapsed = time.perf_counter() - start
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
        sent = sum(r["sent"] for r in reports)
        counts = digest_counts(digest_id)
        # Every message accounted for, or no figure.
        if sent != count or counts["sent"] != count or finished != [digest_id]:
            raise RuntimeError(f"sent {sent} of {count}; journal {counts}; finished {finished}")
        db.session.rollback()
        return {
            "count": count,
            "connections": connections,
            "processes": len(procs),
            "seconds": elapsed,
            "enqueue_seconds": enqueued,
            "peak_rss_kib": max(r["peak_rss_kib"] for r in reports),
            "message_bytes": message_size(),
        }


def deliver_rss(sink_url: str, count: int, timeout: float, connections: int) -> dict[str, Any]:
    """Peak RSS (VmHWM, polled from /proc) of `mailer deliver` sending a digest to `count`."""
    from mailer.extensions import db
    from mailer.journal import digest_counts

    with (
        tempfile.TemporaryDirectory(prefix="mailer-memory-") as tmp,
        throwaway_pg("mailer_bench_memory") as url,
        product_app(url, sink_url, Path(tmp)) as _app,
    ):
        digest_id = seed(count)
        env = {**app_env(url, sink_url, Path(tmp)), "MAILER_SMTP_CONNECTIONS": str(connections)}
        start = time.perf_counter()
        proc = subprocess.Popen(
            [*mailer_cli(), "deliver"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            code, rss = wait_with_rss(proc, timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
        elapsed = time.perf_counter() - start
        if code != 0:
            raise RuntimeError(f"mailer deliver failed with exit code {code}")
        counts = digest_counts(digest_id)
        db.session.rollback()
        if counts["sent"] != count:
            raise RuntimeError(f"mailer deliver sent {counts['sent']} of {count}: {counts}")
        return {"count": count, "seconds": elapsed, "peak_rss_kib": rss, "connections": connections}


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


def run(
    sink: Sink, count: int, connections: list[int], timeout: float, processes: int = 1
) -> list[Row]:
    """Messages per second of the product path at each connection count."""
    rows = []
    for n in connections:
        r = send_digest(sink.url, count, n, timeout, processes=processes)
        how = (
            f"1 worker process, MAILER_SMTP_CONNECTIONS={n}"
            if r["processes"] == 1
            else f"{r['processes']} worker processes, {n} connections in all"
        )
        rows.append(
            Row(
                "ours",
                f"ours: enqueue → claim → render → send → journal, {n} connection"
                + ("s" if n > 1 else ""),
                count / r["seconds"],
                "msg/s",
                f"{count} messages of {r['message_bytes'] // 1024} KiB; enqueue"
                f" {r['enqueue_seconds'] * 1000:.0f} ms; {how}",
                r,
                key=f"ours:{n}",
            )
        )
    return rows


def memory(sink: Sink, sizes: list[int], timeout: float, connections: int = 4) -> list[Row]:
    """Peak RSS of `mailer deliver` sending the digest to each list size.

    Four connections (threads) by default, so that 100,000 messages fit the run's time budget;
    the process holds each thread's batch at once, so this is no smaller than one connection.
    """
    rows = []
    for size in sizes:
        r = deliver_rss(sink.url, size, timeout, connections)
        rows.append(
            Row(
                "memory",
                f"worker peak RSS, {size:,} subscribers",
                r["peak_rss_kib"] / 1024,
                "MiB",
                f"`mailer deliver`, MAILER_SMTP_CONNECTIONS={connections}, all rendered and sent"
                f" in {r['seconds']:.0f} s"
                f" ({size / r['seconds']:.0f}/s with start-up); target < 150 MiB",
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
