"""A distant server: smtp-sink behind STARTTLS (tls_front.py) behind a proxy that adds a round
trip to every exchange and to every new connection (delay_proxy.py); ours, the naive way and
django-newsletter against it, same sink, same run.

Not tc netem on a veth pair into a network namespace: namespaces can be made on these machines,
but the kernel has no netem qdisc ("Specified qdisc kind is unknown"), so the delay is a proxy's.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import trustme

from . import naive, peer
from .common import ROOT, Row, Sink, free_port, wait_port, which
from .ours import send_digest


@contextlib.contextmanager
def distant_sink(rtt_ms: int) -> Iterator[Sink]:
    """smtp-sink behind a STARTTLS front, behind a proxy that adds `rtt_ms` of round trip."""
    binary = which("smtp-sink")
    if binary is None:
        raise RuntimeError("smtp-sink is not installed (Postfix)")
    sink_port, tls_port, port = free_port(), free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="mailer-rtt-") as tmp:
            ca = trustme.CA()
            cert = ca.issue_cert("127.0.0.1")
            ca_file, cert_file, key_file = (
                Path(tmp) / n for n in ("ca.pem", "cert.pem", "key.pem")
            )
            ca.cert_pem.write_to_path(str(ca_file))
            cert.cert_chain_pems[0].write_to_path(str(cert_file))
            cert.private_key_pem.write_to_path(str(key_file))
            user = ["-u", "nobody"] if os.geteuid() == 0 else []
            python = [sys.executable, "-m"]
            for args in (
                [binary, *user, "-c", f"127.0.0.1:{sink_port}", "1000"],
                [*python, "benchmarks.tls_front", f"127.0.0.1:{tls_port}",
                 f"127.0.0.1:{sink_port}", str(cert_file), str(key_file)],
                [*python, "benchmarks.delay_proxy", str(port), f"127.0.0.1:{tls_port}",
                 str(rtt_ms)],
            ):  # fmt: skip
                procs.append(subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL))
            for p in (sink_port, tls_port, port):
                wait_port(p, 15)
            kind = f"smtp-sink behind STARTTLS and a {rtt_ms} ms round-trip delaying proxy"
            yield Sink(port, kind, cafile=str(ca_file))
    finally:
        for proc in procs:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            if proc.poll() is None:
                proc.kill()


def run(
    rtts: list[int], ours_count: int, naive_count: int, connections: int, timeout: float,
    log: list[str],
) -> list[Row]:  # fmt: skip
    """At each round trip: ours on 1 and `connections` connections, the naive way, the peer."""
    rows: list[Row] = []
    for rtt in rtts:
        with distant_sink(rtt) as sink:
            for n in sorted({1, connections}):
                # Small claims, so that every connection has work from the start.
                batch = {"MAILER_SEND_BATCH": str(max(1, ours_count // (4 * n)))}
                r = send_digest(sink.url, ours_count, n, timeout, extra_env=batch)
                rows.append(
                    Row(
                        "rtt",
                        f"ours at {rtt} ms RTT, STARTTLS, {n} connection{'s' if n > 1 else ''}",
                        ours_count / r["seconds"],
                        "msg/s",
                        f"{ours_count} messages; pipelining, connections kept, MAILER_SEND_BATCH="
                        f"{batch['MAILER_SEND_BATCH']}; {sink.kind}",
                        r,
                        key=f"rtt{rtt}:ours:{n}",
                    )
                )
            for who, measured in (
                ("naive", naive.run(sink, naive_count, section="rtt")),
                ("peer", peer.run(sink, naive_count, timeout, log, section="rtt")),
            ):
                for row in measured:
                    row.name = f"{row.name.split(':')[0]} at {rtt} ms RTT, STARTTLS"
                    row.key = f"rtt{rtt}:{who}"
                    rows.append(row)
    return rows
