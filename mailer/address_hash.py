"""The suppression key of an address: SHA-256 of its normal form, in Python and in SQL."""

from __future__ import annotations

import hashlib
import sqlite3
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import String


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
