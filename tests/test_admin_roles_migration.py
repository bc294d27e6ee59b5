"""Upgrading keeps every power: existing admins become owners, existing API tokens get `admin`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from mailer import create_app
from mailer.api_tokens import hash_token
from mailer.extensions import db

BEFORE = "a036c7134b69"


def mailer_db(env: dict[str, str], *args: str) -> None:
    mailer = shutil.which("mailer") or str(Path(sys.executable).parent / "mailer")
    result = subprocess.run(
        [mailer, "db", *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_existing_admins_are_owners_and_tokens_keep_working(
    empty_database_url: str,
    test_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {**os.environ, **test_env, "MAILER_DATABASE_URL": empty_database_url}
    mailer_db(env, "upgrade", BEFORE)
    engine = create_engine(empty_database_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO admins (email, password_hash, session_version, timezone, created_at)"
                " VALUES ('old@example.org', 'x', 1, 'UTC', :t)"
            ),
            {"t": "2026-11-25 09:00:00"},
        )
        conn.execute(
            text(
                "INSERT INTO api_tokens (name, token_hash, prefix, created_at)"
                " VALUES ('cms', :h, 'mlr_old', :t)"
            ),
            {"h": hash_token("mlr_old-token"), "t": "2026-11-25 09:00:00"},
        )
    mailer_db(env, "upgrade")
    mailer_db(env, "check")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT role FROM admins")).scalar() == "owner"
        assert conn.execute(text("SELECT scope FROM api_tokens")).scalar() == "admin"
    monkeypatch.setenv("MAILER_DATABASE_URL", empty_database_url)
    app = create_app({"TESTING": True})
    client = app.test_client()
    headers = {"Authorization": "Bearer mlr_old-token"}
    # The old token may still do an owner's things: erasing is refused only for want of a row.
    assert client.delete("/api/v1/subscribers/999", headers=headers).status_code == 404
    with app.app_context():
        db.engine.dispose()
    mailer_db(env, "downgrade", BEFORE)
    mailer_db(env, "upgrade")
    engine.dispose()
