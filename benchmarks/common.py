"""Shared pieces: the machine, free ports, the SMTP sink, the digest's content, PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
PG_BASE = os.environ.get("MAILER_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
SECRET = "bench-secret-key-" + "x" * 40
FROM = "Documentaries <newsletter@bench.example>"


@dataclass
class Row:
    """One line of the results table."""

    section: str
    name: str
    value: float | None
    unit: str
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    key: str = ""  # names the rows that ratios are computed from


def machine() -> dict[str, Any]:
    """Cores, memory, CPU model, OS and Python of the machine running the benchmark."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_kb = int(line.split()[1])
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "cpu": model or platform.processor(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def free_port() -> int:
    """A free TCP port on loopback, chosen by the kernel."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    """Wait until something accepts connections on host:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port} after {timeout} s")


def peak_rss_kib(pid: int) -> int:
    """The high-water mark of a live process's resident set (VmHWM), in KiB; 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def wait_with_rss(proc: subprocess.Popen[Any], timeout: float) -> tuple[int, int]:
    """Wait for a child and return (exit code, its peak RSS in KiB).

    The peak is polled from /proc while the child runs: rusage's ru_maxrss would not do, because a
    child started with vfork carries its parent's peak across exec on Linux.
    """
    deadline = time.monotonic() + timeout
    peak = 0
    while True:
        peak = max(peak, peak_rss_kib(proc.pid))
        pid, status, _usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, peak
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError(f"{proc.args!r} did not finish in {timeout} s")
        time.sleep(0.05)


def self_peak_rss_kib() -> int:
    """Peak RSS of this process in KiB."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


# --- the sink ---------------------------------------------------------------------------------


@dataclass
class Sink:
    """An accept-and-discard SMTP server: on loopback, or distant and behind STARTTLS (rtt.py)."""

    port: int
    kind: str  # "postfix smtp-sink" or "fallback"
    proc: subprocess.Popen[bytes] | None = None
    host: str = "127.0.0.1"
    cafile: str = ""  # set: the sink speaks STARTTLS with a certificate this CA signed

    @property
    def url(self) -> str:
        """The MAILER_MAIL_URL of the sink."""
        tls = f"?starttls=true&cafile={self.cafile}" if self.cafile else ""
        return f"smtp://{self.host}:{self.port}{tls}"


def ensure_packages(binaries: dict[str, str], log: list[str]) -> None:
    """Install the Debian packages whose binaries are missing, when we may (root and apt-get)."""
    missing = sorted({pkg for binary, pkg in binaries.items() if not _which(binary)})
    if not missing or not shutil.which("apt-get") or os.geteuid() != 0:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log.append(f"installing {', '.join(missing)} with apt-get")
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, capture_output=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", *missing], env=env, check=False, capture_output=True
    )


def _which(binary: str) -> str | None:
    return shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/local/sbin:/sbin")


def which(binary: str) -> str | None:
    """Find a binary on PATH or in the sbin folders where Debian puts Postfix's tools."""
    return _which(binary)


@contextlib.contextmanager
def sink() -> Iterator[Sink]:
    """Postfix's smtp-sink on a free port in a temporary folder; a Python sink if it is missing."""
    binary = which("smtp-sink")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="mailer-sink-") as tmp:
        if binary:
            # -c counts, 1000 is the listen backlog; the sink discards every message.
            # smtp-sink refuses to run as root without a user to switch to.
            user = ["-u", "nobody"] if os.geteuid() == 0 else []
            proc = subprocess.Popen(
                [binary, *user, "-c", f"127.0.0.1:{port}", "1000"],
                cwd=tmp,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            kind = "postfix smtp-sink"
        else:
            proc = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.fallback_sink", str(port)],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
            )
            kind = "fallback Python sink (Postfix not installed)"
        try:
            wait_port(port)
            yield Sink(port, kind, proc)
        finally:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            if proc.poll() is None:
                proc.kill()


# --- PostgreSQL --------------------------------------------------------------------------------


def pg_available() -> bool:
    """Whether the benchmark's PostgreSQL server answers."""
    from sqlalchemy import create_engine, text

    try:
        engine = create_engine(f"{PG_BASE}/postgres")
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


@contextlib.contextmanager
def throwaway_pg(prefix: str) -> Iterator[str]:
    """Create a PostgreSQL database for one measurement and drop it afterwards."""
    from sqlalchemy import create_engine, text

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(f"{PG_BASE}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG_BASE}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def app_env(database_url: str, mail_url: str, instance: Path) -> dict[str, str]:
    """Environment for a mailer process of the benchmark."""
    return {
        **os.environ,
        "MAILER_ENV": "production",
        "MAILER_SECRET_KEY": SECRET,
        "MAILER_DATABASE_URL": database_url,
        "MAILER_MAIL_URL": mail_url,
        "MAILER_BASE_URL": "https://docs.bench.example",
        "MAILER_FROM": FROM,
        "MAILER_POSTAL_ADDRESS": "1 Bench Street, 00000 Loopback",
        "MAILER_INSTANCE_PATH": str(instance),
        "PYTHONPATH": str(ROOT),
    }


def mailer_cli() -> list[str]:
    """How to run the `mailer` command with this interpreter."""
    script = Path(sys.executable).parent / "mailer"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mailer.cli"]


# --- the digest's content ----------------------------------------------------------------------

EXTRA_FILM = {
    "slug": "bench-film-ten",
    "title": "The Tenth Film",
    "director": "A. Director",
    "year": 2025,
    "country": "South Korea",
    "description": (
        "A tenth documentary, added so the benchmark digest features ten films as the issue asks."
        " It follows a family across the border and back again over the course of a decade."
    ),
}


def films() -> list[dict[str, Any]]:
    """The ten films of the benchmark digest: the catalogue's nine and one more."""
    import json

    catalogue = json.loads((ROOT / "data" / "films.json").read_text())
    return [*catalogue, EXTRA_FILM][:10]


INTRO = (
    "This week we feature ten documentaries about North Korea: gymnasts preparing for the Mass"
    " Games, defectors crossing borders, and the rare footage that shows everyday life in the"
    " Hermit Kingdom. Each comes with a note from the editors."
)


def note_for(film: dict[str, Any]) -> str:
    """An editor's note, as an admin would write when featuring a film."""
    return (
        f"Why we picked {film['title']}: it rewards a second viewing, and the director's"
        " interviews add context that the film itself leaves unsaid."
    )


def seed_digest_sql() -> None:
    """Insert the ten films and a digest featuring them into the current app's database."""
    from mailer.extensions import db
    from mailer.models import Digest, DigestFilm, DigestStatus, Film

    digest = Digest(
        subject="Ten documentaries about North Korea",
        preheader="Our picks this week",
        intro_markdown=INTRO,
        status=DigestStatus.SENDING,
    )
    db.session.add(digest)
    for position, data in enumerate(films()):
        film = Film(
            slug=data["slug"],
            title=data["title"],
            director=data.get("director", ""),
            description=data.get("description", ""),
            year=data.get("year"),
            country=data.get("country", ""),
            release_date=date(2020, 1, 1),
        )
        db.session.add(film)
        digest.films.append(DigestFilm(film=film, position=position, note=note_for(data)))
    db.session.commit()


def insert_subscribers_sql(count: int, *, vary: bool = False) -> str:
    """One INSERT … SELECT generate_series loading `count` confirmed subscribers (PostgreSQL)."""
    early = "(g % 3 <> 0)" if vary else "true"
    return (
        "INSERT INTO subscribers (email, status, wants_digest, wants_early_access, nonce,"
        " unsubscribe_key, source, created_at, confirmed_at)"
        f" SELECT 'reader' || g || '@bench.example', 'confirmed', true, {early},"
        " substr(md5(g::text), 1, 16), substr(md5('u' || g), 1, 16), 'import', now(), now()"
        f" FROM generate_series(1, {int(count)}) AS g"
    )
