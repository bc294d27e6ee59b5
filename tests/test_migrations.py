"""The migrations are the schema of record: upgrading an empty database gives the models."""

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, make_url, text

from mailer.extensions import db


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


def test_upgrade_on_empty_database_matches_models(app) -> None:
    # The session fixture built this database with `upgrade()` from migrations/ alone.
    with app.app_context(), db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, db.metadata)
    assert differences == []


def test_mailer_db_upgrade_command_is_idempotent(runner) -> None:
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    check = runner.invoke(args=["db", "check"])
    assert check.exit_code == 0, check.output


def test_console_script_upgrades_an_empty_database(
    empty_database_url: str, test_env: dict[str, str], tmp_path: Path
) -> None:
    env = {
        **os.environ,
        **test_env,
        "MAILER_DATABASE_URL": empty_database_url,
        "MAILER_INSTANCE_PATH": str(tmp_path),
    }
    mailer = shutil.which("mailer") or str(Path(sys.executable).parent / "mailer")
    upgrade = subprocess.run(
        [mailer, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=120
    )
    assert upgrade.returncode == 0, upgrade.stderr
    check = subprocess.run([mailer, "db", "check"], env=env, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert "No new upgrade operations detected" in check.stdout + check.stderr


def test_delivery_indexes_migrate_down_and_up_with_rows_kept(
    empty_database_url: str, test_env: dict[str, str], tmp_path: Path
) -> None:
    """The claim and enqueue indexes (b4e8d1f0a2c3) go both ways on a table with rows."""
    env = {
        **os.environ,
        **test_env,
        "MAILER_DATABASE_URL": empty_database_url,
        "MAILER_INSTANCE_PATH": str(tmp_path),
    }
    mailer = shutil.which("mailer") or str(Path(sys.executable).parent / "mailer")

    def db_command(*args: str) -> None:
        result = subprocess.run(
            [mailer, "db", *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr

    db_command("upgrade", "7d2e4b1a9c10")
    engine = create_engine(empty_database_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO digests (subject, preheader, intro_markdown, status, pause_reason,"
                " created_at, updated_at) VALUES ('s', '', '', 'sending', '', :t, :t)"
            ),
            {"t": "2026-11-25 09:00:00"},
        )
        conn.execute(
            text(
                "INSERT INTO deliveries (kind, status, digest_id, attempts, next_attempt_at,"
                " last_error, created_at) VALUES ('digest', 'queued', 1, 0, :t, '', :t)"
            ),
            {"t": "2026-11-25 09:00:00"},
        )
    db_command("upgrade")
    db_command("check")
    db_command("downgrade", "7d2e4b1a9c10")
    db_command("upgrade")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM deliveries")).scalar() == 1
        names = {index["name"] for index in inspect(conn).get_indexes("deliveries")}
    engine.dispose()
    assert {"ix_deliveries_due_digest", "ix_deliveries_due_mail", "ix_deliveries_leased"} <= names
