"""The migrations are the schema of record: upgrading an empty database gives the models."""

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import create_engine, inspect, text

from mailer import create_app
from mailer.extensions import db
from tests.conftest import TEST_SECRET


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


DbCommand = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture
def mailer_db(empty_database_url: str, test_env: dict[str, str], tmp_path: Path) -> DbCommand:
    """Runs `mailer db ARGS…` as its console script on the empty database; asserts it succeeds."""
    env = {
        **os.environ,
        **test_env,
        "MAILER_DATABASE_URL": empty_database_url,
        "MAILER_INSTANCE_PATH": str(tmp_path),
    }
    mailer = shutil.which("mailer") or str(Path(sys.executable).parent / "mailer")

    def db_command(*args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [mailer, "db", *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        return result

    return db_command


def test_console_script_upgrades_an_empty_database(mailer_db: DbCommand) -> None:
    mailer_db("upgrade")
    check = mailer_db("check")
    assert "No new upgrade operations detected" in check.stdout + check.stderr


def test_delivery_indexes_migrate_down_and_up_with_rows_kept(
    empty_database_url: str, mailer_db: DbCommand
) -> None:
    """The claim and enqueue indexes (b4e8d1f0a2c3) go both ways on a table with rows."""
    mailer_db("upgrade", "7d2e4b1a9c10")
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
    mailer_db("upgrade")
    mailer_db("check")
    mailer_db("downgrade", "7d2e4b1a9c10")
    mailer_db("upgrade")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM deliveries")).scalar() == 1
        names = {index["name"] for index in inspect(conn).get_indexes("deliveries")}
    engine.dispose()
    assert {"ix_deliveries_due_digest", "ix_deliveries_due_mail", "ix_deliveries_leased"} <= names


def test_unsubscribe_links_sent_before_the_unsubscribe_key_keep_working(
    empty_database_url: str, mailer_db: DbCommand, monkeypatch: pytest.MonkeyPatch
) -> None:
    """e1c7a9d4f2b6 starts each key as the row's nonce, which the links of the time carried."""
    mailer_db("upgrade", "9e6a2f4c8b15")
    engine = create_engine(empty_database_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO subscribers (email, status, wants_digest, wants_early_access, nonce,"
                " source, created_at) VALUES ('old@example.org', 'confirmed', true, true,"
                " 'nonce-of-the-time', 'web', :t)"
            ),
            {"t": "2026-11-25 09:00:00"},
        )
    mailer_db("upgrade")
    mailer_db("check")
    with engine.connect() as conn:
        key = conn.execute(text("SELECT unsubscribe_key FROM subscribers")).scalar()
    assert key == "nonce-of-the-time"
    # A link exactly as the earlier code signed it: the id and the nonce.
    sent = URLSafeTimedSerializer(TEST_SECRET, salt="mailer.unsubscribe").dumps(
        [1, "nonce-of-the-time"]
    )
    monkeypatch.setenv("MAILER_DATABASE_URL", empty_database_url)
    app = create_app({"TESTING": True})
    response = app.test_client().post(
        f"/unsubscribe/{sent}", data={"List-Unsubscribe": "One-Click"}
    )
    assert response.status_code == 200
    with app.app_context():
        db.engine.dispose()
    with engine.connect() as conn:
        status = conn.execute(text("SELECT status FROM subscribers")).scalar()
    assert status == "unsubscribed"
    mailer_db("downgrade", "9e6a2f4c8b15")
    mailer_db("upgrade")
    engine.dispose()
