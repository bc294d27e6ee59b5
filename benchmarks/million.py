"""A million subscribers on PostgreSQL: enqueue, the database side of sending, admin queries."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .common import Row, app_env, throwaway_pg
from .ours import finish, go, product_app, seed, start_workers


def timed_ms(query: Callable[[], Any], repeat: int = 5) -> float:
    """Median milliseconds of a query after one warm-up run."""
    query()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        query()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def admin_queries(digest_id: int, count: int) -> dict[str, Callable[[], Any]]:
    """The admin's own functions behind the subscriber list and the dashboard: subscriber_page
    with a SubscriberFilter, and journal.digest_counts (which the API calls too)."""
    from mailer.journal import digest_counts
    from mailer.subscriber_search import SubscriberFilter, subscriber_page

    # The admin's own query: SubscriberFilter and subscriber_page, as /admin/subscribers runs them.
    def first_page() -> Any:
        return subscriber_page(SubscriberFilter(), None)

    def deep_page() -> Any:
        # Keyset: the page after an id half-way down the list.
        return subscriber_page(SubscriberFilter(), count // 2)

    def filtered_page() -> Any:
        return subscriber_page(SubscriberFilter(status="confirmed", topic="early_access"), None)

    def search() -> Any:
        return subscriber_page(SubscriberFilter(query=f"reader{count // 3}@bench.example"), None)

    def prefix_search() -> Any:
        return subscriber_page(SubscriberFilter(query=f"reader{count // 3 + 1}"), None)

    def dashboard() -> Any:
        # The admin's and the API's own counts.
        return digest_counts(digest_id)

    return {
        "subscribers, first page (50, newest first)": first_page,
        "subscribers, a page half-way down (keyset)": deep_page,
        "subscribers, filtered page (status + topic)": filtered_page,
        "subscribers, exact-address search": search,
        "subscribers, address-prefix search": prefix_search,
        "dashboard counts (journal.digest_counts, a digest by status)": dashboard,
    }


def run(count: int, claim_seconds: float, timeout: float) -> list[Row]:
    """Load `count` subscribers into a throwaway database, time the operations, drop it."""
    from sqlalchemy import text

    from mailer.extensions import db

    rows: list[Row] = []
    with (
        tempfile.TemporaryDirectory(prefix="mailer-million-") as tmp,
        throwaway_pg("mailer_bench_million") as url,
        product_app(url, "memory://", Path(tmp)),
    ):
        start = time.perf_counter()
        digest_id = seed(count, vary=True)
        loaded = time.perf_counter() - start
        rows.append(
            Row("million", f"load {count:,} subscribers (INSERT … SELECT)", loaded, "s",
                "generate_series, then VACUUM ANALYZE")
        )  # fmt: skip

        from mailer.digests import start_due_digests

        start = time.perf_counter()
        start_due_digests(datetime.now(UTC))
        enqueued = time.perf_counter() - start
        rows.append(
            Row("million", f"enqueue a digest for {count:,}", enqueued, "s",
                "digests.start_due_digests: one INSERT … SELECT; target < 15 s",
                {"seconds": enqueued})
        )  # fmt: skip
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE deliveries"))

        env = app_env(url, "memory://", Path(tmp))
        procs = start_workers(env, 1, ["--null", "--max-seconds", str(claim_seconds)])
        go(procs)
        report = finish(procs, timeout)[0]
        rows.append(
            Row("million", "claim + re-check + personalise + journal, null backend",
                report["sent"] / report["seconds"], "deliveries/s",
                f"{report['sent']:,} journaled in {report['seconds']:.1f} s by one worker"
                " (scheduler.send_due, one connection; messages rendered, then dropped);"
                " target > 5,000/s", report)
        )  # fmt: skip

        for name, query in admin_queries(digest_id, count).items():
            ms = timed_ms(query)
            rows.append(Row("million", name, ms, "ms", "median of 5; target < 100 ms"))
        db.session.rollback()
    return rows
