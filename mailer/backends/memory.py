"""memory:// keeps sent messages in a list, for tests."""

from __future__ import annotations

from .base import Message, SessionlessBackend


class MemoryBackend(SessionlessBackend):
    """Appends each message to ``outbox``."""

    def __init__(self) -> None:
        self.outbox: list[Message] = []

    @classmethod
    def from_url(cls, url: str) -> MemoryBackend:
        """Build from ``memory://``."""
        return cls()

    def send(self, message: Message) -> None:
        """Keep the message."""
        self.outbox.append(message)
