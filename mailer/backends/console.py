"""console:// prints a readable summary of each message."""

from __future__ import annotations

import sys
from email import message_from_bytes, policy
from typing import TextIO

from .base import Message, SessionlessBackend


class ConsoleBackend(SessionlessBackend):
    """Writes From, To, Subject and the text part of each message to standard output."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    @classmethod
    def from_url(cls, url: str) -> ConsoleBackend:
        """Build from ``console://``."""
        return cls()

    def send(self, message: Message) -> None:
        """Print the message's summary and its text part."""
        parsed = message_from_bytes(message.data, policy=policy.default)
        text_part = parsed.get_body(preferencelist=("plain",))
        text = text_part.get_content() if text_part is not None else "(no text part)"
        out = self.stream or sys.stdout
        out.write(
            f"{'-' * 72}\nFrom: {parsed['From']}\nTo: {', '.join(message.recipients)}\n"
            f"Subject: {parsed['Subject']}\nMessage-ID: {message.message_id}\n\n{text}\n"
        )
        out.flush()
