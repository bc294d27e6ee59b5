"""file:///dir writes one .eml file per message, for people to read (the development default)."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Self
from urllib.parse import unquote, urlsplit

from .base import Message, SessionlessBackend, TemporaryFailure

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


class FileBackend(SessionlessBackend):
    """Writes ``<time>-<message-id>.eml`` files into a folder, never overwriting one."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @classmethod
    def from_url(cls, url: str) -> FileBackend:
        """Build from ``file:///folder``."""
        parts = urlsplit(url)
        path = unquote(parts.netloc + parts.path)
        if not path:
            raise ValueError("file:// needs a folder, e.g. file:///var/mail/outbox")
        return cls(Path(path))

    def __enter__(self) -> Self:
        self.directory.mkdir(parents=True, exist_ok=True)
        return self

    def send(self, message: Message) -> None:
        """Write the message to a new file; an existing name gets a numbered sibling."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        stem = f"{stamp}-{_UNSAFE.sub('_', message.message_id.strip('<>'))[:120]}"
        self.directory.mkdir(parents=True, exist_ok=True)
        for attempt in range(1000):
            name = f"{stem}.eml" if attempt == 0 else f"{stem}-{attempt}.eml"
            try:
                fd = os.open(self.directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
            except OSError as exc:
                raise TemporaryFailure(f"cannot write to outbox: {exc}") from exc
            with os.fdopen(fd, "wb") as out:
                out.write(message.data)
            return
        raise TemporaryFailure("outbox: no free file name")
