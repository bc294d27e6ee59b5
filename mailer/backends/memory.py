"""memory:// keeps sent messages in a list, for tests."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from .base import Message


class MemoryBackend:
    """Appends each message to ``outbox``."""

    def __init__(self) -> None:
        self.outbox: list[Message] = []

    @classmethod
    def from_url(cls, url: str) -> MemoryBackend:
        """Build from ``memory://``."""
        return cls()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def send(self, message: Message) -> None:
        """Keep the message."""
        self.outbox.append(message)
