"""The runner: sets up what it needs, runs every measurement once, prints and writes the table."""

from __future__ import annotations

import argparse
import json
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import dkim, limit, million, naive, ours, peer, rtt, web
from .common import BENCH_DIR, Row, Sink, ensure_packages, machine, pg_available, sink

RESULTS = BENCH_DIR / "results"
SECTIONS = [
    "limit", "ours", "naive", "peer", "memory", "million", "web", "dkim", "processes", "rtt"
]  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """How big each measurement is."""

    limit_count: int
    connections: list[int]
    ours_count: int
    naive_count: int
    peer_count: int
    memory_sizes: list[int]
    memory_budget_s: float
    million_count: int
    claim_seconds: float
    web_seconds: int
    dkim_count: int
    processes_count: int
    rtt_ms: list[int]
    rtt_ours_count: int
    rtt_naive_count: int


# Sized so each throughput figure is some seconds of steady sending; the whole run is ~5 minutes.
FULL = Plan(
    40_000, [1, 4], 20_000, 3_000, 3_000, [10_000, 100_000], 240, 1_000_000, 15, 20, 10_000, 20_000,
    [20, 80], 2_000, 100,
)  # fmt: skip
QUICK = Plan(
    2_000, [1, 4], 500, 100, 100, [1_000, 10_000], 60, 50_000, 3, 3, 1_000, 2_000, [20], 400, 20
)  # fmt: skip
TIMEOUT = 600.0


def ratios(rows: list[Row]) -> list[Row]:
    """The headline: ours against the limit, the naive way and the peer; the web against bare."""
    by_key = {r.key: r.value for r in rows if r.key and r.value}
    out = []

    def add(name: str, top: str, bottom: str, target: str) -> None:
        if top in by_key and bottom in by_key:
            out.append(Row("ratio", name, by_key[top] / by_key[bottom], "x", target))
        else:
            out.append(Row("ratio", name, None, "x", "not measured"))

    for key in sorted(k for k in by_key if k.startswith("ours:")):
        n = key.split(":")[1]
        add(f"ours / limit, {n} connection(s)", key, f"limit:{n}", "target ≥ 0.5")
    add("ours / naive (1 connection)", "ours:1", "naive", "target ≥ 10")
    add("ours / django-newsletter (1 connection)", "ours:1", "peer", "target ≥ 10")
    memory = sorted((int(k.split(":")[1]), k) for k in by_key if k.startswith("memory:"))
    if len(memory) == 2:
        add("peak RSS, larger list / smaller list", memory[1][1], memory[0][1], "target ≤ 1.2")
    add("DKIM RSA-signed / unsigned full path", "dkim:rsa", "dkim:unsigned", "target ≥ 0.85")
    add("DKIM Ed25519-signed / unsigned full path", "dkim:ed25519", "dkim:unsigned", "≥ 0.85")
    add("DKIM RSA-signed full path / limit, 1 connection", "dkim:rsa", "limit:1", "target ≥ 0.5")
    add("signing cost, dkimpy / ours (RSA)", "dkim-cost:dkimpy", "dkim-cost:rsa", "higher: faster")
    add("2 worker processes / 1 (2 connections)", "processes:2", "processes:1", "target ≥ 1.6")
    for ms in sorted({int(k[3:].split(":")[0]) for k in by_key if k.startswith("rtt")}):
        for n in (1, 4):
            for who, label in (("naive", "naive"), ("peer", "django-newsletter")):
                add(
                    f"ours ({n} conn.) / {label} at {ms} ms RTT, STARTTLS",
                    f"rtt{ms}:ours:{n}",
                    f"rtt{ms}:{who}",
                    "target ≥ 10" if ms == 20 else "",
                )
    add("GET / / bare route", "web:index", "web:bare", "target ≥ 0.5")
    add("POST /subscribe / bare route", "web:subscribe", "web:bare", "target ≥ 0.25")
    return out


def fmt(value: float | None) -> str:
    """A figure for the table: three significant digits, thousands separated."""
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def markdown(rows: list[Row], info: dict[str, Any], log: list[str]) -> str:
    """The results as a Markdown table with the machine that produced them."""
    lines = [
        f"Measured {info['date']} on {info['cores']} cores ({info['cpu']}), "
        f"{info['memory_gib']} GiB, {info['os']}, Python {info['python']}; mode: {info['mode']}; "
        f"sink: {info.get('sink', '?')}; took {info.get('seconds', 0):.0f} s.",
        "",
        "| section | measurement | value | unit | notes |",
        "|---|---|---:|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r.section} | {r.name} | {fmt(r.value)} | {r.unit} | {r.note} |")
    if log:
        lines += ["", *[f"- {line}" for line in log]]
    return "\n".join(lines) + "\n"


def table(rows: list[Row]) -> str:
    """The results as a plain-text table for the terminal."""
    width = max(len(r.name) for r in rows)
    return "\n".join(
        f"{r.section:8} {r.name:{width}} {fmt(r.value):>10} {r.unit:12} {r.note}" for r in rows
    )


def guarded(name: str, rows: list[Row], log: list[str], step: Callable[[], list[Row]]) -> None:
    """Run one measurement; a failure becomes a row saying so, and the run goes on."""
    print(f"== {name}", flush=True)
    start = time.perf_counter()
    try:
        new = step()
    except Exception as exc:
        traceback.print_exc()
        new = [Row(name, name, None, "", f"failed: {type(exc).__name__}: {exc}"[:300])]
    for r in new:
        print(f"   {r.name}: {fmt(r.value)} {r.unit}  {r.note}", flush=True)
    rows.extend(new)
    log.append(f"{name}: {time.perf_counter() - start:.0f} s")


def measure(plan: Plan, only: list[str], rows: list[Row], log: list[str], snk: Sink) -> None:
    """Every selected measurement, in order, against one sink."""
    has_pg = pg_available()
    no_pg = [Row("ours", "PostgreSQL", None, "", "not available: no PostgreSQL at 127.0.0.1")]
    if "limit" in only:
        guarded("limit", rows, log, lambda: limit.run(snk, plan.limit_count, plan.connections))
    if "ours" in only:
        guarded(
            "ours",
            rows,
            log,
            lambda: ours.run(snk, plan.ours_count, plan.connections, TIMEOUT) if has_pg else no_pg,
        )
    if "naive" in only:
        guarded("naive", rows, log, lambda: naive.run(snk, plan.naive_count))
    if "peer" in only:
        guarded("peer", rows, log, lambda: peer.run(snk, plan.peer_count, TIMEOUT, log))
    if "memory" in only:
        guarded("memory", rows, log, lambda: memory(plan, rows, snk) if has_pg else no_pg)
    if "million" in only:
        guarded(
            "million",
            rows,
            log,
            lambda: (
                million.run(plan.million_count, plan.claim_seconds, TIMEOUT) if has_pg else no_pg
            ),
        )
    if "web" in only:
        guarded("web", rows, log, lambda: web.run(plan.web_seconds))
    if "dkim" in only:
        guarded(
            "dkim",
            rows,
            log,
            lambda: dkim.run(snk, plan.dkim_count, TIMEOUT) if has_pg else no_pg,
        )
    if "rtt" in only:
        guarded(
            "rtt",
            rows,
            log,
            lambda: (
                rtt.run(plan.rtt_ms, plan.rtt_ours_count, plan.rtt_naive_count, 4, TIMEOUT, log)
                if has_pg
                else no_pg
            ),
        )
    if "processes" in only:
        guarded(
            "processes",
            rows,
            log,
            lambda: processes(snk, plan.processes_count) if has_pg else no_pg,
        )


def processes(snk: Sink, count: int) -> list[Row]:
    """The full path on 2 connections: one worker process, then two independent claimers."""
    rows = []
    for n in (1, 2):
        r = ours.send_digest(snk.url, count, 2, TIMEOUT, processes=n)
        rows.append(
            Row(
                "processes",
                f"{n} worker process{'es' if n > 1 else ''}, 2 connections in all",
                count / r["seconds"],
                "msg/s",
                f"{count} messages on PostgreSQL; each process claims from the same journal",
                r,
                key=f"processes:{n}",
            )
        )
    return rows


def memory(plan: Plan, rows: list[Row], snk: Sink) -> list[Row]:
    """Peak RSS of `mailer deliver` sending the digest to each list size."""
    return ours.memory(snk, plan.memory_sizes, TIMEOUT)


def merged(
    path: Path, only: list[str], rows: list[Row], log: list[str], info: dict[str, Any]
) -> tuple[list[Row], list[str]]:
    """The previous results with the sections just measured replaced by the new rows."""
    previous = json.loads(path.read_text())
    kept = [
        Row(**r) for r in previous["rows"] if r["section"] != "ratio" and r["section"] not in only
    ]
    fresh = {r.section for r in rows}
    order = [s for s in SECTIONS if s in fresh or any(k.section == s for k in kept)]
    combined = sorted([*kept, *rows], key=lambda r: order.index(r.section))
    note = (
        f"{', '.join(only)} re-measured {info['date']}; the rest from {previous['machine']['date']}"
    )
    info["date"] = previous["machine"]["date"]
    info["seconds"] = previous["machine"].get("seconds", 0)
    return combined, [*previous.get("log", []), *log, note]


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run, print the table, write results/latest.json and latest.md."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts, about two minutes")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=SECTIONS)
    parser.add_argument("--out", type=Path, default=RESULTS, help="where latest.* are written")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the other sections' rows from the existing latest.json (with --only)",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    log: list[str] = []
    ensure_packages({"smtp-sink": "postfix", "smtp-source": "postfix", "wrk": "wrk"}, log)
    info = {**machine(), "mode": "quick" if args.quick else "full", "plan": asdict(plan)}
    rows: list[Row] = []
    start = time.perf_counter()
    with sink() as snk:
        info["sink"] = snk.kind
        print(f"sink: {snk.kind} on port {snk.port}", flush=True)
        measure(plan, args.only, rows, log, snk)
    info["seconds"] = time.perf_counter() - start
    if args.merge and (args.out / "latest.json").exists():
        rows, log = merged(args.out / "latest.json", args.only, rows, log, info)
    rows = ratios(rows) + rows
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(
        json.dumps({"machine": info, "rows": [asdict(r) for r in rows], "log": log}, indent=2)
        + "\n"
    )
    (args.out / "latest.md").write_text(markdown(rows, info, log))
    print()
    print(table(rows))
    print(f"\nwritten to {args.out}/latest.json and latest.md ({info['seconds']:.0f} s)")
    return 0
