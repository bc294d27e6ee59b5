"""Placeholder module, wired into create_app."""

from flask import Flask


def init_app(app: Flask) -> None:
    """Nothing to register yet."""
