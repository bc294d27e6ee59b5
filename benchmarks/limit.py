"""The limit: Postfix's smtp-source sending pre-rendered digests into the sink."""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

from .common import Row, Sink, which
from .naive import reference_message


def run(sink: Sink, count: int, connections: list[int]) -> list[Row]:
    """Messages per second of smtp-source at each connection count."""
    binary = which("smtp-source")
    if binary is None:
        return [
            Row("limit", "smtp-source", None, "msg/s", "not available: Postfix is not installed")
        ]
    data = reference_message()
    rows = []
    with tempfile.TemporaryDirectory(prefix="mailer-limit-") as tmp:
        path = Path(tmp) / "digest.eml"
        # smtp-source -F sends the file as header and body; it wants bare LF line ends.
        path.write_bytes(data.replace(b"\r\n", b"\n"))
        for sessions in connections:
            start = time.perf_counter()
            subprocess.run(
                [
                    binary,
                    "-m", str(count),
                    "-s", str(sessions),
                    "-F", str(path),
                    "-f", "newsletter@bench.example",
                    "-t", "reader@bench.example",
                    f"127.0.0.1:{sink.port}",
                ],
                check=True,
                cwd=tmp,
                timeout=300,
            )  # fmt: skip
            elapsed = time.perf_counter() - start
            rows.append(
                Row(
                    "limit",
                    f"limit: smtp-source, {sessions} connection{'s' if sessions > 1 else ''}",
                    count / elapsed,
                    "msg/s",
                    f"{count} messages of {len(data) // 1024} KiB into {sink.kind}",
                    {"count": count, "seconds": elapsed, "connections": sessions,
                     "bytes": len(data)},
                    key=f"limit:{sessions}",
                )
            )  # fmt: skip
    return rows
