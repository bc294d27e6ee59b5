"""`mailer worker --processes N`: N worker processes, kept running, stopped together."""

from __future__ import annotations

import ctypes
import logging
import signal
import subprocess
import sys
import time
from types import FrameType

log = logging.getLogger("mailer.supervisor")

# A child that exits sooner than this after its start failed to start; this many in a row ends all.
START_SECONDS = 10.0
START_FAILURES = 3
MAX_BACKOFF = 30.0
STOP_SECONDS = 60.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the supervisor dies, so no worker is left orphaned."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _start(index: int) -> subprocess.Popen[bytes]:
    """One worker process; only the first runs the jobs that are not sending."""
    args = ["worker", "--processes", "1", *([] if index == 0 else ["--only-sending"])]
    code = "from mailer.cli import main; main()"
    proc = subprocess.Popen([sys.executable, "-c", code, *args], preexec_fn=_die_with_parent)
    log.info("worker process %d started (pid %d)", index, proc.pid)
    return proc


def supervise(count: int) -> int:
    """Run `count` worker processes until SIGTERM or Ctrl-C; the exit status for the command."""
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    children = {i: _start(i) for i in range(count)}
    started = {i: time.monotonic() for i in range(count)}
    failures = dict.fromkeys(range(count), 0)
    restart_at: dict[int, float] = {}
    status = 0
    while not stopping:
        time.sleep(0.2)
        now = time.monotonic()
        for index, proc in list(children.items()):
            code = proc.poll()
            if code is None or index in restart_at:
                continue
            quick = now - started[index] < START_SECONDS
            failures[index] = failures[index] + 1 if quick else 1
            if quick and failures[index] >= START_FAILURES:
                print(
                    f"error: worker process {index} failed {failures[index]} times at start "
                    f"(exit status {code}); stopping",
                    file=sys.stderr,
                )
                stopping, status = True, 1
                break
            delay = min(MAX_BACKOFF, 2.0 ** (failures[index] - 1))
            log.warning(
                "worker process %d (pid %d) exited with status %s; restarting in %.0f s",
                index, proc.pid, code, delay,
            )  # fmt: skip
            restart_at[index] = now + delay
        for index, when in list(restart_at.items()):
            if not stopping and now >= when:
                del restart_at[index]
                children[index], started[index] = _start(index), time.monotonic()
    for proc in children.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    for proc in children.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log.info("all %d worker processes stopped", count)
    return status
