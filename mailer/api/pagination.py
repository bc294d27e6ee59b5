"""Cursor pagination: `?limit=&cursor=` in, `{"items": [...], "next_cursor": ...}` out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import marshmallow as ma
from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute
from webargs.flaskparser import abort

from ..extensions import db

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
_SALT = "mailer.api.cursor"


class InvalidCursor(ValueError):
    """A cursor that this service did not issue, or issued for another list."""


class PageArgs(ma.Schema):
    """Query arguments of every paginated list."""

    limit = ma.fields.Integer(
        load_default=DEFAULT_LIMIT,
        validate=ma.validate.Range(min=1, max=MAX_LIMIT),
        metadata={"description": f"items per page, 1 to {MAX_LIMIT}"},
    )
    cursor = ma.fields.String(
        load_default=None,
        metadata={"description": "next_cursor of the previous page; omit for the first page"},
    )


def page_schema(item_schema: type[ma.Schema], name: str) -> type[ma.Schema]:
    """A schema for one page of items of `item_schema`."""
    return ma.Schema.from_dict(
        {
            "items": ma.fields.List(ma.fields.Nested(item_schema), required=True),
            "next_cursor": ma.fields.String(
                required=True,
                allow_none=True,
                metadata={"description": "pass as `cursor` for the next page; null on the last"},
            ),
        },
        name=name,
    )


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of rows and the cursor of the next, if there is one."""

    items: list[T]
    next_cursor: str | None


def _serializer(kind: str) -> URLSafeSerializer:
    """Signs cursors so that clients cannot forge them, and a cursor fits one list only."""
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt=f"{_SALT}.{kind}")


def encode_cursor(kind: str, last_id: int) -> str:
    """An opaque cursor that continues after the row with id `last_id`."""
    return str(_serializer(kind).dumps(last_id))


def decode_cursor(kind: str, cursor: str) -> int:
    """The row id a cursor continues after; raise InvalidCursor if it is not one of ours."""
    try:
        value: Any = _serializer(kind).loads(cursor)
    except BadSignature:
        raise InvalidCursor("cursor is not valid for this list") from None
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidCursor("cursor is not valid for this list")
    return value


def paginate(
    query: Select[T],
    key: InstrumentedAttribute[int],
    *,
    kind: str,
    limit: int,
    cursor: str | None,
    newest_first: bool = False,
) -> Page[T]:
    """One keyset page of `query` ordered by the unique integer column `key`.

    A cursor that is not one of this list's answers 400, naming the `cursor` argument.
    """
    if cursor:
        try:
            after = decode_cursor(kind, cursor)
        except InvalidCursor as exc:
            abort(400, message=str(exc), errors={"cursor": [str(exc)]})
        query = query.where(key < after if newest_first else key > after)
    query = query.order_by(key.desc() if newest_first else key.asc()).limit(limit + 1)
    rows = list(db.session.scalars(query))
    if len(rows) <= limit:
        return Page(rows, None)
    rows = rows[:limit]
    return Page(rows, encode_cursor(kind, getattr(rows[-1], key.key)))
