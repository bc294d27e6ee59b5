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
from sqlalchemy import create_engine, make_url, text

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
