"""`pytest --clock-offset` moves the wall clock of the tests and of every process they start."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta

import pytest

from tests.conftest import CLOCK_DIRECTORY, clock_offset
from tests.factories import machine_now

# Prints the child's wall clock after a timed wait that must not last the offset.
CHILD = "import threading, time; threading.Event().wait(0.2); print(time.time())"


def child_time(env: dict[str, str]) -> float:
    """The wall clock a Python child process started with ``env`` reads."""
    result = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    return float(result.stdout)


def test_offsets_are_read_in_days_hours_minutes_or_seconds() -> None:
    assert clock_offset("365d") == timedelta(days=365)
    assert clock_offset("-12h") == timedelta(hours=-12)
    assert clock_offset("90m") == timedelta(minutes=90)
    assert clock_offset("30") == clock_offset("30s") == timedelta(seconds=30)
    with pytest.raises(ValueError, match="not an offset"):
        clock_offset("next year")


def test_this_run_and_its_processes_read_the_clock_it_was_given(
    pytestconfig: pytest.Config,
) -> None:
    offset = pytestconfig.getoption("clock_offset").total_seconds()
    assert abs(time.time() - (machine_now().timestamp() + offset)) < 5
    started = time.monotonic()
    assert abs(child_time(dict(os.environ)) - (machine_now().timestamp() + offset)) < 10
    assert time.monotonic() - started < 20, "a timed wait in the child lasted the offset"


def test_a_child_started_with_the_clock_variable_travels_and_still_waits_normally() -> None:
    env = {**os.environ, "TEST_CLOCK_OFFSET": str(86400 * 365), "PYTHONPATH": str(CLOCK_DIRECTORY)}
    started = time.monotonic()
    assert abs(child_time(env) - (machine_now().timestamp() + 86400 * 365)) < 10
    assert time.monotonic() - started < 20
