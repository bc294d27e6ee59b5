"""Shared fixtures: an app on a migrated database (SQLite, or PostgreSQL when asked), clients."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from flask_migrate import upgrade
from sqlalchemy import create_engine, text

from mailer import create_app
from mailer.extensions import db

TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"


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
