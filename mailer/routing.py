"""URL converters shared by every blueprint."""

from __future__ import annotations

from typing import Any

from flask import Flask
from werkzeug.routing import IntegerConverter, Map

# PostgreSQL's integer: a larger id cannot name a row, and must not reach the database.
MAX_ID = 2**31 - 1


class RowIdConverter(IntegerConverter):
    """`<int:…>` in every route: ids beyond any row the database can hold are a 404 at routing."""

    def __init__(self, url_map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", MAX_ID)
        super().__init__(url_map, *args, **kwargs)


def init_app(app: Flask) -> None:
    """Install the converter before any blueprint adds its routes."""
    app.url_map.converters["int"] = RowIdConverter
