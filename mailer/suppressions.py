"""The suppression list: addresses never mailed or re-added, kept as hashes of their normal form."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, event, exists, select
from sqlalchemy.engine import Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import String

from .extensions import db, dialect_insert
from .models import Suppression, SuppressionReason

log = logging.getLogger("mailer.suppressions")

NOTE_MAX = 2000


class SuppressionInvalid(ValueError):
    """A suppression that cannot be stored; ``errors`` maps each bad field to what is wrong."""

    def __init__(self, errors: dict[str, str]) -> None:
        """Keep the field errors."""
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))
        self.errors = errors


# --- hashes -------------------------------------------------------------------------------------


def normalise_address(address: str) -> str:
    """The form of an address that suppression hashes are taken of."""
    return address.strip().lower()


def email_hash(address: str) -> str:
    """The suppression-list key of an address: hex SHA-256 of its normalised form."""
    return hashlib.sha256(normalise_address(address).encode("utf-8")).hexdigest()


class sql_email_hash(FunctionElement[str]):
    """email_hash() computed by the database, so eligibility stays one set-based query."""

    type = String()
    inherit_cache = True


@compiles(sql_email_hash, "postgresql")
def _email_hash_postgresql(element: sql_email_hash, compiler: Any, **kw: Any) -> str:
    """PostgreSQL: sha256() of the lower-cased, trimmed address, as hex."""
    arg = compiler.process(element.clauses, **kw)
    return f"encode(sha256(convert_to(lower(btrim({arg})), 'UTF8')), 'hex')"


@compiles(sql_email_hash, "sqlite")
def _email_hash_sqlite(element: sql_email_hash, compiler: Any, **kw: Any) -> str:
    """SQLite: a Python function registered on every connection."""
    return f"mailer_email_hash({compiler.process(element.clauses, **kw)})"


@event.listens_for(Engine, "connect")
def _register_sqlite_functions(dbapi_connection: Any, connection_record: Any) -> None:
    """Give SQLite connections the functions our queries use."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.create_function(
            "mailer_email_hash",
            1,
            lambda value: None if value is None else email_hash(value),
            deterministic=True,
        )


# --- the list -----------------------------------------------------------------------------------


def not_suppressed(address: ColumnElement[str]) -> ColumnElement[bool]:
    """SQL: the address in this column is not on the suppression list."""
    return ~exists().where(Suppression.email_hash == sql_email_hash(address))


def find_suppression(address: str) -> Suppression | None:
    """The suppression-list entry of an address, if it has one."""
    return db.session.scalar(
        select(Suppression)
        .where(Suppression.email_hash == email_hash(address))
        .execution_options(populate_existing=True)
    )


def is_suppressed(address: str) -> bool:
    """Whether an address is on the suppression list."""
    found = db.session.scalar(
        select(Suppression.id).where(Suppression.email_hash == email_hash(address))
    )
    return found is not None


def suppress(address: str, reason: SuppressionReason, now: datetime, note: str = "") -> Suppression:
    """Put an address on the suppression list, once, and return its entry.

    A second call keeps the first entry, except an erasure: it outranks any earlier reason, and
    the address itself goes (only its hash stays). One statement, so two workers suppressing the
    same address at once both succeed.
    """
    erased = reason == SuppressionReason.ERASED
    values = {
        "email_hash": email_hash(address),
        "email": None if erased else normalise_address(address),
        "reason": reason,
        "note": note[:NOTE_MAX],
        "created_at": now,
    }
    stmt = dialect_insert(Suppression.__table__).values(**values)
    if erased:
        stmt = stmt.on_conflict_do_update(
            index_elements=["email_hash"],
            set_={"reason": reason, "email": None, "note": values["note"]},
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=["email_hash"])
    db.session.execute(stmt)
    entry = find_suppression(address)
    assert entry is not None
    return entry


def unsuppress(entry: Suppression, why: str, by: str) -> None:
    """Take an address off the suppression list, logging who did it and why."""
    why = why.strip()
    if not why:
        raise SuppressionInvalid({"why": "is required: say why the address may be mailed again"})
    log.info(
        "suppression %s (%s) removed by %s: %s", entry.id, entry.reason, by, why.replace("\n", " ")
    )
    db.session.delete(entry)
