"""Unbound extension objects; create_app binds them to the application."""

import sqlite3
from typing import Any

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase

# Named constraints let Alembic alter them later, on PostgreSQL and in SQLite's batch mode alike.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every model."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
csrf = CSRFProtect()
limiter = Limiter(key_func=get_remote_address, default_limits=[])
login_manager = LoginManager()


@event.listens_for(Engine, "connect")
def _sqlite_write_ahead_log(dbapi_connection: Any, connection_record: Any) -> None:
    """Put SQLite files in write-ahead-log mode (it is kept in the file, so this is a no-op after
    the first time).

    With the default rollback journal every commit writes, syncs and deletes a journal file, and
    a writer shuts readers out; with the log a commit is one append and one sync (durability as
    before: synchronous stays FULL), and readers carry on while another process writes.
    """
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.execute("PRAGMA journal_mode=WAL")


def dialect_insert(table: Any) -> Any:
    """The database's own INSERT, which knows ON CONFLICT (DO NOTHING / DO UPDATE)."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    if db.session.get_bind().dialect.name == "postgresql":
        return pg_insert(table)
    return sqlite_insert(table)
