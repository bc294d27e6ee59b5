"""Mail transports: the Backend protocol, failures, and backends chosen by MAILER_MAIL_URL."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from urllib.parse import urlsplit

from flask import Flask, current_app

from ..config import ConfigError
from .base import (
    Backend,
    Message,
    MessageRefused,
    PermanentFailure,
    SenderMisconfigured,
    TemporaryFailure,
)
from .console import ConsoleBackend
from .file import FileBackend
from .memory import MemoryBackend

__all__ = [
    "Backend",
    "Message",
    "MessageRefused",
    "PermanentFailure",
    "SenderMisconfigured",
    "TemporaryFailure",
    "backend_from_url",
    "get_backend",
]

BackendFactory = Callable[[str], Backend]

BUILT_IN: dict[str, BackendFactory] = {
    "console": ConsoleBackend.from_url,
    "file": FileBackend.from_url,
    "memory": MemoryBackend.from_url,
}


def _smtp_factories() -> dict[str, BackendFactory]:
    """The SMTP schemes (imported late: smtplib and ssl are not needed by the others)."""
    from .smtp import SMTPBackend

    return {"smtp": SMTPBackend.from_url, "smtps": SMTPBackend.from_url}


def backend_from_url(url: str) -> Backend:
    """Build the backend a URL names; other packages add schemes via the `mailer.backends` group."""
    scheme = urlsplit(url).scheme.lower()
    factories = {**BUILT_IN, **_smtp_factories()}
    for entry in entry_points(group="mailer.backends"):
        factories.setdefault(entry.name, entry.load())
    if scheme not in factories:
        known = ", ".join(sorted(f"{name}://" for name in factories))
        raise ConfigError(f"MAILER_MAIL_URL: unknown scheme {scheme!r} (use {known})")
    try:
        return factories[scheme](url)
    except ValueError as exc:
        raise ConfigError(f"MAILER_MAIL_URL: {exc}") from None


def get_backend() -> Backend:
    """The backend this app was started with."""
    backend: Backend = current_app.extensions["mailer.backend"]
    return backend


def init_app(app: Flask) -> None:
    """Resolve the backend once, at start."""
    app.extensions["mailer.backend"] = backend_from_url(app.config["MAILER_MAIL_URL"])
