"""The file backend's outbox, readable by people: list the messages written, read one."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from pathlib import Path

from .backends import get_backend
from .backends.file import FileBackend

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,250}\.eml$")
# Enough of a file to hold its headers, so listing never reads whole bodies.
_HEAD_BYTES = 64 * 1024


class OutboxNotFound(Exception):
    """No such message in the outbox (or a name that could never be one)."""


@dataclass(frozen=True)
class OutboxEntry:
    """One written message, as a line in a list."""

    name: str
    subject: str
    to: str
    date: datetime | None
    size: int


@dataclass(frozen=True)
class OutboxMessage:
    """One written message, as the recipient would see it."""

    name: str
    headers: list[tuple[str, str]]
    subject: str
    from_: str
    to: str
    date: datetime | None
    html: str | None
    text: str | None


def outbox_directory() -> Path | None:
    """The folder the app's backend writes to, if it is the file backend."""
    backend = get_backend()
    return backend.directory if isinstance(backend, FileBackend) else None


def _date_of(message: EmailMessage) -> datetime | None:
    """The Date header as a datetime, if it parses."""
    try:
        header = message["Date"]
        value = getattr(header, "datetime", None) if header is not None else None
    except (ValueError, TypeError, IndexError):
        return None
    return value if isinstance(value, datetime) else None


def _header(message: EmailMessage, name: str) -> str:
    """A header as text, empty when it is missing or broken."""
    try:
        value = message[name]
    except (ValueError, TypeError, IndexError):
        return ""
    return "" if value is None else str(value)


def list_outbox(directory: Path, limit: int = 200) -> list[OutboxEntry]:
    """The newest ``limit`` messages in the outbox, newest first."""
    try:
        files = [
            entry
            for entry in os.scandir(directory)
            if entry.is_file(follow_symlinks=False) and _NAME.match(entry.name)
        ]
    except FileNotFoundError:
        return []
    files.sort(key=lambda entry: (entry.stat().st_mtime_ns, entry.name), reverse=True)
    parser = BytesHeaderParser(policy=policy.default)
    entries = []
    for entry in files[: max(limit, 0)]:
        with open(entry.path, "rb") as handle:
            head = handle.read(_HEAD_BYTES).split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        parsed = parser.parsebytes(head + b"\r\n\r\n")
        assert isinstance(parsed, EmailMessage)
        entries.append(
            OutboxEntry(
                name=entry.name,
                subject=_header(parsed, "Subject"),
                to=_header(parsed, "To"),
                date=_date_of(parsed),
                size=entry.stat().st_size,
            )
        )
    return entries


def read_outbox_message(directory: Path, name: str) -> OutboxMessage:
    """One message by file name; anything but a plain ``.eml`` name in the folder is refused."""
    if not _NAME.match(name):
        raise OutboxNotFound(name)
    folder = directory.resolve()
    path = (folder / name).resolve()
    if path.parent != folder or not path.is_file():
        raise OutboxNotFound(name)
    parsed = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    html = parsed.get_body(preferencelist=("html",))
    text = parsed.get_body(preferencelist=("plain",))
    return OutboxMessage(
        name=name,
        headers=[(key, _header(parsed, key)) for key in parsed],
        subject=_header(parsed, "Subject"),
        from_=_header(parsed, "From"),
        to=_header(parsed, "To"),
        date=_date_of(parsed),
        html=str(html.get_content()) if html is not None else None,
        text=str(text.get_content()) if text is not None else None,
    )
