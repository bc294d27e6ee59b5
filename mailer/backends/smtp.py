"""smtp:// and smtps:// deliver through an SMTP server with smtplib, reusing one connection."""

from __future__ import annotations

import smtplib
import socket
import ssl
from types import TracebackType
from typing import Self
from urllib.parse import parse_qs, unquote, urlsplit

from .base import Message, PermanentFailure, SenderMisconfigured, TemporaryFailure


def classify(
    code: int, reply: bytes | str
) -> TemporaryFailure | PermanentFailure | SenderMisconfigured:
    """Turn an SMTP reply into the failure class that says who must act."""
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    enhanced = text.split(" ", 1)[0] if text[:2] in ("4.", "5.") else None
    if code == 530 or code == 535 or (enhanced and enhanced.startswith("5.7.")):
        return SenderMisconfigured(text, smtp_code=code, enhanced_status=enhanced)
    if 400 <= code < 500:
        return TemporaryFailure(text, smtp_code=code, enhanced_status=enhanced)
    return PermanentFailure(text, smtp_code=code, enhanced_status=enhanced)


class SMTPBackend:
    """One SMTP connection per session; reconnects once if the server dropped it."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        implicit_tls: bool = False,
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        verify: bool = True,
        envelope_from: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.implicit_tls = implicit_tls
        self.starttls = starttls
        self.username = username
        self.password = password
        self.timeout = timeout
        self.verify = verify
        self.envelope_from = envelope_from
        self._conn: smtplib.SMTP | None = None

    @classmethod
    def from_url(cls, url: str) -> SMTPBackend:
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        implicit = parts.scheme == "smtps"
        return cls(
            parts.hostname or "localhost",
            parts.port or (465 if implicit else 25),
            implicit_tls=implicit,
            starttls=query.get("starttls", "false").lower() in ("1", "true", "yes"),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            timeout=float(query.get("timeout", "30")),
            verify=query.get("verify", "true").lower() not in ("0", "false", "no"),
            envelope_from=query.get("envelope_from") or None,
        )

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _connect(self) -> smtplib.SMTP:
        try:
            conn: smtplib.SMTP
            if self.implicit_tls:
                conn = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=self._tls_context()
                )
            else:
                conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            if conn.sock is not None:
                # Messages over 16 KiB otherwise stall on delayed ACKs.
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.ehlo()
            if self.starttls:
                conn.starttls(context=self._tls_context())
                conn.ehlo()
            if self.username:
                conn.login(self.username, self.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            raise SenderMisconfigured(
                f"authentication refused: {exc.smtp_error!r}", smtp_code=exc.smtp_code
            ) from exc
        except smtplib.SMTPResponseException as exc:
            raise classify(exc.smtp_code, exc.smtp_error) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise TemporaryFailure(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        return conn

    def __enter__(self) -> Self:
        self._conn = self._connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._conn is not None:
            try:
                self._conn.quit()
            except (OSError, smtplib.SMTPException):
                self._conn.close()
            self._conn = None

    def send(self, message: Message) -> None:
        """Send over the session's connection, reconnecting once if it was dropped while idle."""
        if self._conn is None:
            self._conn = self._connect()
        try:
            self._send(self._conn, message)
        except smtplib.SMTPServerDisconnected:
            self._conn = self._connect()
            try:
                self._send(self._conn, message)
            except smtplib.SMTPServerDisconnected as exc:
                self._conn = None
                raise TemporaryFailure(f"connection dropped: {exc}") from exc

    def _send(self, conn: smtplib.SMTP, message: Message) -> None:
        options: list[str] = []
        if conn.has_extn("smtputf8") and not message.data.isascii():
            options.append("SMTPUTF8")
        sender = self.envelope_from or message.sender
        try:
            refused = conn.sendmail(sender, list(message.recipients), message.data, options)
        except smtplib.SMTPServerDisconnected:
            raise
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()))
            raise classify(code, reply) from exc
        except smtplib.SMTPSenderRefused as exc:
            raise SenderMisconfigured(
                f"sender refused: {exc.smtp_error!r}", smtp_code=exc.smtp_code
            ) from exc
        except smtplib.SMTPResponseException as exc:
            raise classify(exc.smtp_code, exc.smtp_error) from exc
        except (TimeoutError, OSError, smtplib.SMTPException) as exc:
            self._conn = None
            raise TemporaryFailure(f"connection failed: {exc}") from exc
        if refused:
            code, reply = next(iter(refused.values()))
            raise classify(code, reply)
