"""Shared fixtures: an app on a migrated database (SQLite, or PostgreSQL when asked), clients."""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from flask_migrate import upgrade
from sqlalchemy import create_engine, make_url, text

from mailer import create_app
from mailer.extensions import db
from tests.factories import Workers, World, add_world, is_postgres
from tests.smtp_server import ScriptedSMTPServer

TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"

# --- The clock: `pytest --clock-offset=365d` runs the suite a year ahead -----------------------
CLOCK_DIRECTORY = Path(__file__).resolve().parent / "clock"
OFFSET_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def clock_offset(value: str) -> timedelta:
    """A signed offset such as 365d, -12h, 90m or 30s (a bare number is seconds)."""
    match = re.fullmatch(r"([+-]?\d+)([dhms]?)", value.strip())
    if match is None:
        raise ValueError(f"not an offset like 365d, 12h, 90m or 30s: {value!r}")
    number, unit = match.groups()
    return timedelta(**{OFFSET_UNITS[unit or "s"]: int(number)})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--clock-offset",
        type=clock_offset,
        default=timedelta(0),
        metavar="OFFSET",
        help="move the wall clock of the tests and of every process they start, e.g. 365d",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Move the clock of this process, and through tests/clock/sitecustomize.py its children's."""
    offset: timedelta = config.getoption("clock_offset")
    if not offset:
        return
    os.environ["TEST_CLOCK_OFFSET"] = str(offset.total_seconds())
    path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(CLOCK_DIRECTORY), *([path] if path else [])])
    travel = time_machine.travel(time.time() + offset.total_seconds(), tick=True)
    travel.start()
    config.add_cleanup(travel.stop)


def pytest_report_header(config: pytest.Config) -> str | None:
    offset: timedelta = config.getoption("clock_offset")
    return f"clock moved by {offset} (tests and the processes they start)" if offset else None


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """MAILER_TEST_DATABASE_URL (PostgreSQL in CI's second run), else a fresh SQLite file."""
    url = os.environ.get("MAILER_TEST_DATABASE_URL")
    if not url:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    return url


@pytest.fixture(scope="session")
def migrated(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Upgrade the test database once per run with the real migrations."""
    env = base_env(database_url, tmp_path_factory.mktemp("instance"))
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        app = create_app({"TESTING": True})
        with app.app_context():
            upgrade()
            db.engine.dispose()
    return database_url


def base_env(database_url: str, instance: Path) -> dict[str, str]:
    """The environment every app and worker process of a test runs with."""
    return {
        "MAILER_ENV": "development",
        "MAILER_SECRET_KEY": TEST_SECRET,
        "MAILER_DATABASE_URL": database_url,
        "MAILER_MAIL_URL": "memory://",
        "MAILER_INSTANCE_PATH": str(instance),
        "MAILER_BASE_URL": "http://localhost",
        "MAILER_POSTAL_ADDRESS": "Documentaries Ltd, 1 Film Street, London N1 1AA",
    }


def clear_database(database_url: str) -> None:
    """Remove every row, keeping the schema, so each test starts empty."""
    engine = create_engine(database_url)
    tables = [t.name for t in reversed(db.metadata.sorted_tables)]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for name in tables:
                conn.execute(text(f"DELETE FROM {name}"))
    engine.dispose()


@pytest.fixture
def test_env(migrated: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Set (and return) the MAILER_* environment of this test."""
    env = base_env(migrated, tmp_path / "instance")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def app(test_env: dict[str, str], migrated: str) -> Iterator[Flask]:
    """A fresh app on an emptied, migrated database."""
    application = create_app({"TESTING": True})
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()
    clear_database(migrated)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


def csrf_token_from(html: str) -> str:
    """The CSRF token of the first form on a page."""
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html)
    assert match, "page has no CSRF token"
    return match.group(1)


# --- Admin console: an account and a signed-in client ----------------------------------------
ADMIN_EMAIL = "editor@example.org"
ADMIN_PASSWORD = "correct horse battery staple"


def make_admin(app: Flask, email: str = ADMIN_EMAIL, password: str = ADMIN_PASSWORD) -> None:
    """Create an admin account in the app's database."""
    from mailer.admin.auth import create_admin
    from mailer.models import utcnow

    with app.app_context():
        create_admin(email, password, utcnow())
        db.session.commit()


def sign_in(client: FlaskClient, email: str = ADMIN_EMAIL, password: str = ADMIN_PASSWORD):
    """Post the admin sign-in form (with its CSRF token) and return the response."""
    token = csrf_token_from(client.get("/admin/sign-in").get_data(as_text=True))
    return client.post(
        "/admin/sign-in", data={"email": email, "password": password, "csrf_token": token}
    )


def admin_csrf(client: FlaskClient) -> str:
    """A CSRF token of the signed-in admin's session."""
    return csrf_token_from(client.get("/admin/account").get_data(as_text=True))


@pytest.fixture
def admin_client(app: Flask, client: FlaskClient) -> FlaskClient:
    """A client signed in as ADMIN_EMAIL."""
    make_admin(app)
    response = sign_in(client)
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


# --- Shared fixtures around tests/factories.py ------------------------------------------------
@pytest.fixture
def smtp_server() -> Iterator[ScriptedSMTPServer]:
    """A real SMTP server on 127.0.0.1 whose replies the test scripts."""
    server = ScriptedSMTPServer().start()
    yield server
    server.stop()


@pytest.fixture
def workers(
    app: Flask, test_env: dict[str, str], smtp_server: ScriptedSMTPServer, tmp_path: Path
) -> Iterator[Workers]:
    """Worker processes on this test's database and SMTP server, with short engine timings."""
    env = {
        **test_env,
        "MAILER_MAIL_URL": smtp_server.url,
        "MAILER_RETRY_DELAY": "0.3",
        "MAILER_LEASE_SECONDS": "5",
        "MAILER_SEND_BATCH": "50",
    }
    group = Workers(env, tmp_path)
    yield group
    group.stop_all()


@pytest.fixture
def postgres_only(migrated: str) -> None:
    """Several workers need a database that several processes can write at once."""
    if not is_postgres(migrated):
        pytest.skip("several worker processes at once: PostgreSQL run only")


@pytest.fixture
def world(app: Flask) -> Iterator[World]:
    """The e-mail World (see tests/factories.py), inside an app context."""
    with app.app_context():
        yield add_world()


@pytest.fixture
def empty_database_url(migrated: str, tmp_path: Path) -> Iterator[str]:
    """A database with nothing in it, of the same kind as the suite's."""
    url = make_url(migrated)
    if url.get_backend_name() != "postgresql":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    name = f"mailer_empty_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
