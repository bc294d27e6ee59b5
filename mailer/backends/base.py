"""The transport contract: a Message, the Backend protocol, and the ways a send can fail."""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self


@dataclass(frozen=True, slots=True)
class Message:
    """A finished message: envelope and the exact bytes to put on the wire."""

    sender: str
    recipients: tuple[str, ...]
    data: bytes
    message_id: str


class DeliveryFailure(Exception):
    """A send that did not go through; carries the server's reply where there was one."""

    def __init__(
        self,
        reason: str,
        *,
        smtp_code: int | None = None,
        enhanced_status: str | None = None,
        stage: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.smtp_code = smtp_code
        self.enhanced_status = enhanced_status
        # The SMTP step that was refused (connect, MAIL, RCPT, DATA), where known.
        self.stage = stage

    def __str__(self) -> str:
        # A server's reply text usually opens with its enhanced code already.
        parts = [str(self.smtp_code) if self.smtp_code else ""]
        if self.enhanced_status and not self.reason.startswith(self.enhanced_status):
            parts.append(self.enhanced_status)
        code = " ".join(p for p in parts if p)
        return f"{code} {self.reason}".strip()


class TemporaryFailure(DeliveryFailure):
    """Try again later: 4xx replies, time-outs, dropped connections."""


class PermanentFailure(DeliveryFailure):
    """This recipient will never accept it (5xx about the recipient): stop and suppress."""


class MessageRefused(DeliveryFailure):
    """The server refused this message, not its recipient (content, size): fail it, blame nobody."""


class SenderMisconfigured(DeliveryFailure):
    """The fault is ours (authentication, DMARC, policy): pause sending, blame no subscriber."""


class Backend(Protocol):
    """Delivers messages; a session (the context manager) holds a reusable connection."""

    def __enter__(self) -> Self:
        """Open a session, e.g. connect to the SMTP server."""
        ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the session."""
        ...

    def send(self, message: Message) -> None:
        """Deliver one message, or raise one of the DeliveryFailure classes."""
        ...


class SessionlessBackend:
    """Base of backends with no connection to keep: a session opens and closes nothing."""

    def __enter__(self) -> Self:
        """Nothing to open."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Nothing to close."""
