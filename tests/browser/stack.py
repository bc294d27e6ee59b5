"""The service served for real: a migrated SQLite database, gunicorn, the worker, an SMTP catcher.

Used by the browser tests' fixtures and by ``scripts/screenshots.py``; it does not depend on
pytest, so the same stack can be started from a plain script.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from flask import Flask

from mailer.paths import FILMS_FILE
from tests.smtp_server import ScriptedSMTPServer, free_port

ROOT = Path(__file__).resolve().parents[2]
TEST_SECRET = "browser-test-secret-key-that-is-long-enough-0123456789"
POSTAL_ADDRESS = "Documentaries Ltd, 1 Film Street, London N1 1AA"
START_TIMEOUT = 60.0


class StackError(RuntimeError):
    """A part of the served stack did not start; the message carries its log."""


def mailer_command() -> list[str]:
    """The `mailer` console script of the Python running the tests."""
    beside = Path(sys.executable).parent / "mailer"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("mailer")
    if found is None:
        raise StackError("the `mailer` command is not installed (pip install -e '.[test]')")
    return [found]


class LiveStack:
    """The web app on 127.0.0.1:<free port> with its worker, mail going to ``smtp``.

    Use as a context manager. ``url`` is the served base URL; ``env`` is the environment every
    process of the stack runs with (tests may run more `mailer` commands with it).
    """

    def __init__(
        self,
        workdir: Path,
        smtp: ScriptedSMTPServer,
        *,
        load_films: bool = True,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.smtp = smtp
        self.load_films = load_films
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database_url = f"sqlite:///{workdir / 'mailer.db'}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
        env.update(
            {
                "MAILER_ENV": "development",
                "MAILER_SECRET_KEY": TEST_SECRET,
                "MAILER_DATABASE_URL": self.database_url,
                "MAILER_MAIL_URL": smtp.url,
                "MAILER_BASE_URL": self.url,
                "MAILER_INSTANCE_PATH": str(workdir / "instance"),
                "MAILER_POSTAL_ADDRESS": POSTAL_ADDRESS,
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(extra_env or {})
        self.env = env
        self.web: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self._logs: list[IO[bytes]] = []

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> LiveStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Migrate, load the films, start gunicorn and (when it exists) the worker."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.mailer("db", "upgrade")
        if self.load_films:
            self.mailer("import-films", str(FILMS_FILE))
        self.web = self._spawn(
            "web",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "1",
                "--threads",
                "4",
                "--access-logfile",
                "-",
                "mailer:create_app()",
            ],
        )
        self._wait_until_healthy()
        if self.has_command("worker"):
            self.worker = self._spawn("worker", [*mailer_command(), "worker"])

    def stop(self) -> None:
        """Stop the worker and the web server, politely first."""
        for proc in (self.worker, self.web):
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
        for log in self._logs:
            log.close()
        self._logs.clear()

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        """Start one long-running process, its output in ``<workdir>/<name>.log``."""
        log = (self.workdir / f"{name}.log").open("ab")
        self._logs.append(log)
        return subprocess.Popen(
            args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=None
        )

    def _wait_until_healthy(self) -> None:
        """Poll /healthz until it answers 200; fail with the server's log if it dies or hangs."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.web is not None
            if self.web.poll() is not None:
                raise StackError(f"the web server exited:\n{self.log('web')}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise StackError(f"the web server did not become healthy:\n{self.log('web')}")

    def log(self, name: str) -> str:
        """The tail of one process's log (``web`` or ``worker``)."""
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    # -- commands and data -------------------------------------------------------------------

    def mailer(
        self, *args: str, input: str | None = None, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run one `mailer` command on this stack's database; raise with its output on failure."""
        result = subprocess.run(
            [*mailer_command(), *args],
            cwd=ROOT,
            env={**self.env, **(env or {})},
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise StackError(
                f"`mailer {' '.join(args)}` exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def has_command(self, name: str) -> bool:
        """Whether `mailer NAME` exists in this version of the code."""
        result = subprocess.run(
            [*mailer_command(), name, "--help"],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            timeout=60,
        )
        return result.returncode == 0

    def import_films(self, rows: list[dict[str, object]]) -> None:
        """Add or update films through `mailer import-films`, the importer's own checks included."""
        path = self.workdir / f"films-{time.monotonic_ns()}.json"
        path.write_text(json.dumps(rows))
        self.mailer("import-films", str(path))

    def delete_film(self, slug: str) -> None:
        """Remove a film a test added, so the catalogue is the nine films again.

        Its early-access alerts and opens go first: SQLite here does not enforce the cascades.
        """
        from sqlalchemy import delete, select

        from mailer.extensions import db
        from mailer.models import Delivery, EarlyAccessOpen, Film

        with self.app_context():
            film_ids = select(Film.id).where(Film.slug == slug).scalar_subquery()
            db.session.execute(delete(Delivery).where(Delivery.film_id == film_ids))
            db.session.execute(delete(EarlyAccessOpen).where(EarlyAccessOpen.film_id == film_ids))
            db.session.execute(delete(Film).where(Film.slug == slug))
            db.session.commit()

    def delete_digest(self, digest_id: int) -> None:
        """Remove a digest a test made, its deliveries (test sends included) first.

        SQLite here does not enforce the cascades, so the deliveries go explicitly; a sent digest
        also leaves the public archive.
        """
        from sqlalchemy import delete

        from mailer.extensions import db
        from mailer.models import Delivery, Digest

        with self.app_context():
            db.session.execute(delete(Delivery).where(Delivery.digest_id == digest_id))
            found = db.session.get(Digest, digest_id)
            if found is not None:
                db.session.delete(found)
            db.session.commit()

    def deliver(self) -> None:
        """Send everything due now (`mailer deliver`), without waiting for the worker's tick."""
        self.mailer("deliver")

    def create_admin(self, email: str, password: str) -> None:
        """Create an admin account with `mailer create-admin` (password from the environment)."""
        self.mailer("create-admin", email, env={"MAILER_ADMIN_PASSWORD": password})

    @contextmanager
    def app_context(self) -> Iterator[Flask]:
        """An app on this stack's database, in this process, for seeding rows the UI cannot make.

        Commit what you add: the served processes only see committed rows.
        """
        from mailer import create_app
        from mailer.extensions import db

        saved = dict(os.environ)
        os.environ.update({k: v for k, v in self.env.items() if k.startswith("MAILER_")})
        try:
            app = create_app()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        with app.app_context():
            try:
                yield app
            finally:
                db.session.remove()
                db.engine.dispose()
