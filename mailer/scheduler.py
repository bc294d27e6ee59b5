"""The worker: APScheduler jobs that start due digests, send what is due, compose recurring ones."""

from __future__ import annotations

import importlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from types import FrameType

import click
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from flask import Flask, current_app
from flask.cli import with_appcontext

from . import webhooks
from .backends import SenderMisconfigured, backend_from_url, get_backend
from .config import recurring_trigger
from .digests import compose_recurring_digest, finish_digests, start_due_digests
from .extensions import db
from .journal import enqueue_early_access_alerts
from .models import utcnow
from .sending import BatchStats, Sender, claim_batch, count_due
from .supervisor import supervise

log = logging.getLogger("mailer.scheduler")

TICK_SECONDS = 1.0
# One tick sends for at most this long, so finishing digests is never held up for long.
TICK_BUDGET = 20.0
RECURRING_GRACE = 3600
HOUSEKEEPING_SECONDS = 3600.0


def worker_name() -> str:
    """This process's name in claimed_by: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


# --- sending ------------------------------------------------------------------------------------


def _sender_loop(
    app: Flask,
    worker: str,
    index: int,
    budget: float,
    progress: Callable[[int], None] | None,
) -> BatchStats:
    """Claim and send batches on one connection until nothing is due or the budget is spent."""
    total = BatchStats()
    with app.app_context():
        # Each parallel connection needs its own backend object: a session holds one connection.
        backend = get_backend() if index == 0 else backend_from_url(app.config["MAILER_MAIL_URL"])
        sender = Sender(worker, backend, utcnow)
        lease = float(app.config["MAILER_LEASE_SECONDS"])
        batch = max(1, int(app.config["MAILER_SEND_BATCH"]))
        rate = float(app.config["MAILER_SEND_RATE"])
        if rate > 0:
            # A batch must go out well within its lease, even at the slowest rate allowed.
            batch = min(batch, max(1, int(rate * lease / 2)))
        deadline = time.monotonic() + budget
        try:
            while time.monotonic() < deadline:
                ids = claim_batch(worker, utcnow(), batch, lease)
                if not ids:
                    break
                stats = sender.send_batch(ids, progress)
                total.add(stats)
                if stats.done == 0:
                    break  # all given back (digest paused, failing server): wait for next tick
        finally:
            db.session.remove()
    return total


def send_due(
    app: Flask, worker: str, budget: float, progress: Callable[[int], None] | None = None
) -> BatchStats:
    """Send due deliveries on MAILER_SMTP_CONNECTIONS parallel connections."""
    connections = max(1, int(app.config["MAILER_SMTP_CONNECTIONS"]))
    if connections == 1:
        return _sender_loop(app, worker, 0, budget, progress)
    lock = threading.Lock()

    def report(n: int) -> None:
        if progress is not None:
            with lock:
                progress(n)

    total = BatchStats()
    with ThreadPoolExecutor(max_workers=connections, thread_name_prefix="sender") as pool:
        futures = [
            pool.submit(_sender_loop, app, f"{worker}/{i}", i, budget, report)
            for i in range(connections)
        ]
        for future in futures:
            total.add(future.result())
    return total


def prepare(app: Flask, now: datetime) -> None:
    """Start due digests and queue early-access alerts."""
    with app.app_context():
        try:
            start_due_digests(now)
            enqueue_early_access_alerts(now)
        finally:
            db.session.remove()


def finish(app: Flask, now: datetime) -> None:
    """Mark finished digests sent."""
    with app.app_context():
        try:
            finish_digests(now)
        finally:
            db.session.remove()


class SetupAlarm:
    """Logs a setup mistake (e.g. a refused login) once when it starts, not on every tick."""

    def __init__(self) -> None:
        self.problem = ""

    def raised(self, problem: str) -> None:
        """The mail server refuses us; say so if this is news."""
        if problem != self.problem:
            log.error("cannot send until the setup is fixed: %s", problem)
        self.problem = problem

    def sent(self) -> None:
        """Mail went out, so whatever was wrong is fixed."""
        if self.problem:
            log.info("sending works again")
        self.problem = ""


def tick(app: Flask, worker: str, alarm: SetupAlarm | None = None) -> None:
    """The worker's heartbeat: start due digests, queue alerts, send, finish digests."""
    alarm = alarm or SetupAlarm()
    prepare(app, utcnow())
    try:
        stats = send_due(app, worker, TICK_BUDGET)
    except SenderMisconfigured as exc:
        # The digests concerned are paused with the reason; the worker carries on.
        alarm.raised(str(exc))
    else:
        if stats.sent:
            alarm.sent()
    finish(app, utcnow())


# --- recurring digests --------------------------------------------------------------------------


def latest_slot(trigger: CronTrigger, now: datetime, grace: float) -> datetime | None:
    """The last time the schedule fired at or before now, within the grace time."""
    slot: datetime | None = None
    candidate = trigger.get_next_fire_time(None, now - timedelta(seconds=grace))
    while candidate is not None and candidate <= now:
        slot = candidate
        candidate = trigger.get_next_fire_time(candidate, candidate + timedelta(microseconds=1))
    return slot


def compose_due(app: Flask, trigger: CronTrigger) -> None:
    """The recurring job: compose the digest of the slot that just fired."""
    now = utcnow()
    # The job runs just after its slot: look back a minute first, the whole grace time if need be.
    slot = latest_slot(trigger, now, 60) or latest_slot(trigger, now, RECURRING_GRACE)
    if slot is None:
        return
    with app.app_context():
        try:
            compose_recurring_digest(slot, now)
        finally:
            db.session.remove()


# --- housekeeping -------------------------------------------------------------------------------


def purge_function() -> Callable[[datetime], int] | None:
    """subscribers.purge_unconfirmed(now) where that module provides it."""
    try:
        module = importlib.import_module("mailer.subscribers")
    except ImportError:
        return None
    function = getattr(module, "purge_unconfirmed", None)
    return function if callable(function) else None


def housekeeping(app: Flask, purge: Callable[[datetime], int] | None) -> None:
    """Delete never-confirmed subscribers past their time."""
    now = utcnow()
    with app.app_context():
        try:
            if purge is not None:
                purged = purge(now)
                db.session.commit()
                log.info("housekeeping: %d unconfirmed subscribers purged", purged)
        finally:
            db.session.remove()


# --- the process --------------------------------------------------------------------------------


class _SkipNoise(logging.Filter):
    """Hide APScheduler's note that a tick is skipped while the previous one still sends."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances" not in record.getMessage()


def build_scheduler(app: Flask, worker: str, only_sending: bool = False) -> BlockingScheduler:
    """The worker's jobs (only the sending tick if told so); the caller starts it."""
    scheduler = BlockingScheduler(timezone=UTC)
    scheduler.add_job(
        tick,
        "interval",
        args=(app, worker, SetupAlarm()),
        seconds=TICK_SECONDS,
        id="tick",
        max_instances=1,
        coalesce=True,
        next_run_time=datetime.now(UTC),
    )
    if only_sending:
        return scheduler
    expression = app.config["MAILER_DIGEST_SCHEDULE"].strip()
    if expression:
        trigger = recurring_trigger(expression, app.config["MAILER_TIMEZONE"])
        scheduler.add_job(
            compose_due,
            trigger,
            args=(app, trigger),
            id="recurring",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=RECURRING_GRACE,
        )
        log.info("recurring digests on %r (%s)", expression, app.config["MAILER_TIMEZONE"])
    purge = purge_function()
    scheduler.add_job(
        housekeeping,
        "interval",
        args=(app, purge),
        seconds=HOUSEKEEPING_SECONDS,
        id="housekeeping",
        max_instances=1,
        coalesce=True,
        next_run_time=datetime.now(UTC) + timedelta(seconds=30),
    )
    webhooks.add_worker_job(scheduler, app)
    if purge is None:
        log.info("housekeeping: no purge of unconfirmed subscribers in this version")
    return scheduler


def _stop(signum: int, frame: FrameType | None) -> None:
    """SIGTERM stops the worker like Ctrl-C does."""
    raise SystemExit(0)


def default_processes(app: Flask) -> int:
    """Every core on PostgreSQL; one on SQLite, whose writers take turns anyway."""
    if db.engine.dialect.name == "sqlite":
        return 1
    return os.cpu_count() or 1


@click.command("worker")
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes to run, each claiming from the same journal "
    "[default: the number of cores on PostgreSQL, 1 on SQLite].",
)
@click.option("--only-sending", is_flag=True, hidden=True)
@with_appcontext
def worker_command(processes: int | None, only_sending: bool) -> None:
    """Run the sending worker until stopped (any number may run, on any machines)."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    count = processes or default_processes(app)
    if count > 1:
        raise SystemExit(supervise(count))
    worker = worker_name()
    logging.getLogger("apscheduler.scheduler").addFilter(_SkipNoise())
    logging.getLogger("apscheduler.executors.default").setLevel(logging.WARNING)
    scheduler = build_scheduler(app, worker, only_sending)
    signal.signal(signal.SIGTERM, _stop)
    log.info("worker %s started", worker)
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        if scheduler.running:
            scheduler.shutdown(wait=True)
        log.info("worker %s stopped", worker)


@click.command("deliver")
@with_appcontext
def deliver_command() -> None:
    """Send everything due now, with a progress bar, then exit."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    worker = worker_name()
    prepare(app, utcnow())
    with app.app_context():
        due = count_due(utcnow())
        db.session.remove()
    total = BatchStats()
    with click.progressbar(length=due, label="Sending") as bar:
        total.add(send_due(app, worker, float("inf"), bar.update))
    finish(app, utcnow())
    click.echo(
        f"{total.sent} sent, {total.retried} to retry, {total.failed} failed, "
        f"{total.skipped} skipped"
    )


def init_app(app: Flask) -> None:
    """Register the `mailer worker` and `mailer deliver` commands."""
    app.cli.add_command(worker_command)
    app.cli.add_command(deliver_command)
