"""A pg_dump of a live database restores into a fresh database that the app serves."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, make_url, select, text

from mailer import create_app
from mailer.digests import create_digest, schedule_digest
from mailer.extensions import db
from mailer.models import Digest, DigestStatus, Film, Subscriber, SubscriberStatus, utcnow
from mailer.subscribers import ConsentContext, confirm, subscribe
from tests.factories import wait_until

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SECRET = "backup-test-secret-key-long-enough-0123456789"


def server_major(admin_url: str) -> int:
    """The PostgreSQL server's major version."""
    engine = create_engine(admin_url)
    with engine.connect() as conn:
        number = int(conn.execute(text("SHOW server_version_num")).scalar_one())
    engine.dispose()
    return number // 10000


def client_tool(name: str, major: int) -> str:
    """pg_dump or pg_restore of the server's major version (Debian keeps each in its own folder)."""
    path = Path(f"/usr/lib/postgresql/{major}/bin/{name}")
    found = str(path) if path.exists() else shutil.which(name)
    assert found, f"{name} not found: install postgresql-client-{major}"
    version = subprocess.run([found, "--version"], capture_output=True, text=True, check=True)
    match = re.search(r"\) (\d+)", version.stdout)
    assert match and int(match.group(1)) == major, (
        f"{found} is {version.stdout.strip()}, the server is PostgreSQL {major}"
    )
    return found


@pytest.fixture
def fresh_databases(migrated: str) -> Iterator[tuple[str, str]]:
    """Two empty databases on the test server (the original and the restore), dropped after."""
    names = [f"mailer_backup_{os.getpid()}_{role}" for role in ("live", "restored")]
    admin = create_engine(make_url(migrated).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for name in names:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(migrated)
    yield (
        url.set(database=names[0]).render_as_string(hide_password=False),
        url.set(database=names[1]).render_as_string(hide_password=False),
    )
    with admin.connect() as conn:
        for name in names:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def libpq(url: str) -> str:
    """The libpq form of a SQLAlchemy URL, for pg_dump and pg_restore."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def production_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    """A production environment on this database, sending into a file outbox."""
    return {
        "MAILER_ENV": "production",
        "MAILER_SECRET_KEY": SECRET,
        "MAILER_DATABASE_URL": database_url,
        "MAILER_MAIL_URL": f"file://{tmp_path / 'outbox'}",
        "MAILER_INSTANCE_PATH": str(tmp_path / "instance"),
        "MAILER_BASE_URL": "https://news.example.org",
        "MAILER_POSTAL_ADDRESS": "Documentaries Ltd, 1 Film Street, London N1 1AA",
    }


def mailer(env: dict[str, str], *args: str) -> str:
    """Run `mailer <args>` and return what it printed; fail with its output if it fails."""
    result = subprocess.run(
        [str(BIN / "mailer"), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def add_subscriber_and_digest(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> int:
    """A confirmed subscriber and a digest scheduled now, through the app's own functions."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    app = create_app()
    now = utcnow()  # `mailer deliver` below reads the same clock
    with app.app_context():
        subscribe("viewer@example.org", ["digest"], ConsentContext(form="test"), now)
        subscriber = db.session.scalars(select(Subscriber)).one()
        confirm(subscriber, ConsentContext(form="test"), now)
        film = db.session.scalars(select(Film).order_by(Film.id)).first()
        assert film is not None
        digest = create_digest(
            "Backed up and restored", "", "Films from North Korea.", [(film.id, "")], now
        )
        schedule_digest(digest, None, now)
        db.session.commit()
        digest_id = digest.id
        db.session.remove()
        db.engine.dispose()
    return digest_id


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    """Status and body of a GET."""
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode()


def answers(url: str, server: subprocess.Popen[bytes], log: Path) -> bool:
    """Whether the server answers yet (failing at once if it died)."""
    assert server.poll() is None, log.read_text()
    try:
        get(url)
    except OSError:
        return False
    return True


@pytest.mark.postgres_only
@pytest.mark.usefixtures("postgres_only")
def test_pg_dump_restores_into_a_fresh_database_the_app_serves(
    migrated: str,
    fresh_databases: tuple[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    live, restored = fresh_databases
    major = server_major(make_url(migrated).set(database="postgres").render_as_string(False))
    pg_dump, pg_restore = client_tool("pg_dump", major), client_tool("pg_restore", major)

    env = production_env(live, tmp_path)
    mailer(env, "db", "upgrade")
    mailer(env, "import-films", str(ROOT / "data" / "films.json"))
    digest_id = add_subscriber_and_digest(env, monkeypatch)
    assert "0 failed" in mailer(env, "deliver")
    engine = create_engine(live)
    with engine.connect() as conn:
        status = conn.execute(select(Digest.status).where(Digest.id == digest_id)).scalar_one()
    engine.dispose()
    assert status == DigestStatus.SENT

    # The documented commands: a custom-format dump, restored into an empty database.
    dump = tmp_path / "mailer.dump"
    subprocess.run([pg_dump, "-Fc", "-f", str(dump), libpq(live)], check=True)
    restore = subprocess.run(
        [pg_restore, "--no-owner", "--exit-on-error", "-d", libpq(restored), str(dump)],
        capture_output=True,
        text=True,
    )
    assert restore.returncode == 0 and not restore.stderr, restore.stderr

    restored_env = production_env(restored, tmp_path / "restored")
    assert "(head)" in mailer(restored_env, "db", "current")
    engine = create_engine(restored)
    with engine.connect() as conn:
        confirmed = conn.execute(
            select(func.count())
            .select_from(Subscriber)
            .where(Subscriber.status == SubscriberStatus.CONFIRMED)
        ).scalar_one()
    engine.dispose()
    assert confirmed == 1

    port = free_port()
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [
                str(BIN / "gunicorn"),
                "--config",
                str(ROOT / "deploy" / "gunicorn.conf.py"),
                "--bind",
                f"127.0.0.1:{port}",
            ],
            env={**os.environ, **restored_env, "WEB_CONCURRENCY": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(f"{base}/healthz", server, log), 30, "gunicorn to answer")
        status_code, health = get(f"{base}/healthz")
        assert status_code == 200 and json.loads(health) == {"status": "ok", "database": "ok"}
        status_code, landing = get(f"{base}/")
        assert status_code == 200 and "A State of Mind" in landing
        status_code, archived = get(f"{base}/digests/{digest_id}")
        assert status_code == 200 and "Backed up and restored" in archived
    finally:
        server.terminate()
        server.wait(timeout=40)
