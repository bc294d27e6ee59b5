"""smtp:// and smtps:// deliver through an SMTP server with smtplib, reusing one connection."""

from __future__ import annotations

import contextlib
import re
import smtplib
import socket
import ssl
from enum import StrEnum
from types import TracebackType
from typing import Self
from urllib.parse import parse_qs, unquote, urlsplit

from .base import (
    Message,
    MessageRefused,
    PermanentFailure,
    SenderMisconfigured,
    TemporaryFailure,
)

Failure = TemporaryFailure | PermanentFailure | MessageRefused | SenderMisconfigured
Reply = tuple[int, bytes]
# An address with nothing in it that the header parser would have to interpret.
_PLAIN_ADDRESS = re.compile(r'[^\s<>()\[\],;:"\\@]+@[^\s<>()\[\],;:"\\@]+')
_TRUE = ("1", "true", "yes", "on")
# An RFC 3463 enhanced status code: class.subject.detail.
_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")


class Stage(StrEnum):
    """The step of an SMTP session a reply answers; it says what a refusal is about."""

    CONNECT = "connect"
    MAIL = "MAIL"
    RCPT = "RCPT"
    DATA = "DATA"


def _text(reply: bytes | str) -> str:
    """A server reply as one line of text (smtplib joins a multi-line reply with newlines)."""
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    first, *rest = text.strip().splitlines() or [""]
    enhanced = _ENHANCED.match(first)
    # Continuation lines repeat the enhanced code (RFC 3463 §2): keep the words only.
    repeated = re.compile(re.escape(enhanced.group(0)) + r"\s*") if enhanced else None
    lines = [first] + [repeated.sub("", line, count=1) if repeated else line for line in rest]
    return " ".join(line.strip() for line in lines if line.strip())


def enhanced_status(code: int, text: str) -> str | None:
    """The RFC 3463 code that opens a reply, if its class agrees with the reply code."""
    found = _ENHANCED.match(text)
    if found is None or found.group(1) != str(code)[:1]:
        return None
    return found.group(0)


def classify(code: int, reply: bytes | str, stage: Stage) -> Failure:
    """Turn an SMTP reply into the failure class that says who must act.

    4xx is temporary. A permanent refusal is ours to fix (SenderMisconfigured) when it comes
    at connect or MAIL, is 530/535, or is a 5.7.x security or policy code other than 5.7.1; it
    is about the message (MessageRefused: no one is blamed) for 5.3.x system limits such as
    5.3.4 too big, 5.6.x content, 5.2.3 too long for the mailbox, and for any other refusal of
    DATA; it is about the recipient (PermanentFailure: suppress them) for 5.1.x addressing and
    5.2.x mailbox codes wherever they come, and for any other refusal of RCPT, 5.7.1 included.
    """
    text = _text(reply)
    enhanced = enhanced_status(code, text)
    failure: type[Failure]
    if not 500 <= code < 600:
        failure = TemporaryFailure
    else:
        failure = _refused_party(code, enhanced or "", stage)
    return failure(text, smtp_code=code, enhanced_status=enhanced, stage=stage)


def _refused_party(code: int, enhanced: str, stage: Stage) -> type[Failure]:
    """Who a permanent refusal is about: us, the message or the recipient (see classify)."""
    subject = enhanced[:4]
    if stage == Stage.CONNECT or code in (530, 535):
        return SenderMisconfigured
    if enhanced == "5.2.3" or subject in ("5.3.", "5.6."):
        return MessageRefused
    if subject == "5.7." and enhanced != "5.7.1":
        return SenderMisconfigured
    if stage == Stage.MAIL:
        return SenderMisconfigured
    if subject in ("5.1.", "5.2.") or stage == Stage.RCPT:
        return PermanentFailure
    return MessageRefused


class SMTPBackend:
    """One SMTP connection per session; reconnects if the server dropped it while idle.

    URL: ``smtp://user:pass@host:port?starttls=true&timeout=30&verify=true&cafile=/ca.pem
    &envelope_from=bounces@example.org``; ``smtps://`` speaks TLS from the first byte.
    """

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
        cafile: str | None = None,
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
        self.cafile = cafile
        self.envelope_from = envelope_from
        self._conn: smtplib.SMTP | None = None

    @classmethod
    def from_url(cls, url: str) -> SMTPBackend:
        """Build from ``smtp://`` or ``smtps://`` with the options in the query."""
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        implicit = parts.scheme.lower() == "smtps"
        try:
            timeout = float(query.get("timeout", "30"))
        except ValueError:
            raise ValueError("timeout must be a number of seconds") from None
        try:
            port = parts.port
        except ValueError:
            raise ValueError("the port must be a number, e.g. smtp://host:587") from None
        return cls(
            parts.hostname or "localhost",
            port or (465 if implicit else 25),
            implicit_tls=implicit,
            starttls=query.get("starttls", "false").lower() in _TRUE,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            timeout=timeout,
            verify=query.get("verify", "true").lower() in _TRUE,
            cafile=query.get("cafile") or None,
            envelope_from=query.get("envelope_from") or None,
        )

    def _tls_context(self) -> ssl.SSLContext:
        """Verify the server's certificate unless told not to; trust ``cafile`` if given."""
        context = ssl.create_default_context(cafile=self.cafile)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _connect(self) -> smtplib.SMTP:
        """Open, secure and authenticate a connection, or raise the failure that says why not."""
        conn: smtplib.SMTP | None = None
        try:
            if self.implicit_tls:
                conn = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=self._tls_context()
                )
            else:
                conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            if conn.sock is not None:
                # Messages over 16 KiB otherwise stall on delayed ACKs (benchmarks/README.md,
                # "What sending costs on these machines").
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.ehlo()
            if self.starttls:
                if not conn.has_extn("starttls"):
                    raise SenderMisconfigured(
                        f"{self.host}:{self.port} does not offer STARTTLS: remove starttls=true "
                        "from MAILER_MAIL_URL, or use smtps:// if it speaks TLS from the start"
                    )
                conn.starttls(context=self._tls_context())
                conn.ehlo()
            if self.username:
                conn.login(self.username, self.password or "")
        except SenderMisconfigured:
            _close_quietly(conn)
            raise
        except smtplib.SMTPAuthenticationError as exc:
            _close_quietly(conn)
            raise SenderMisconfigured(
                f"{self.host}:{self.port} refused the login ({exc.smtp_code} "
                f"{_text(exc.smtp_error)}): check the user name and password in MAILER_MAIL_URL",
                stage=Stage.CONNECT,
            ) from exc
        except smtplib.SMTPNotSupportedError as exc:
            _close_quietly(conn)
            raise SenderMisconfigured(
                f"{self.host}:{self.port}: {exc}: remove the user name and password from "
                "MAILER_MAIL_URL, or add starttls=true if it offers AUTH only over TLS"
            ) from exc
        except ssl.SSLCertVerificationError as exc:
            _close_quietly(conn)
            raise SenderMisconfigured(
                f"the TLS certificate of {self.host} is not trusted ({exc.verify_message}): give "
                "its CA as cafile=/path/ca.pem in MAILER_MAIL_URL"
            ) from exc
        except smtplib.SMTPResponseException as exc:
            _close_quietly(conn)
            raise classify(exc.smtp_code, exc.smtp_error, Stage.CONNECT) from exc
        except (OSError, smtplib.SMTPException) as exc:
            _close_quietly(conn)
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
        """Send over the session's connection; a failure leaves the session usable."""
        if self._conn is None:
            self._conn = self._connect()
        try:
            self._transaction(message)
        except (TemporaryFailure, PermanentFailure, MessageRefused, SenderMisconfigured):
            raise
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            raise TemporaryFailure(f"connection failed: {exc}") from exc

    def _drop(self) -> None:
        """Forget a connection that can no longer be trusted."""
        _close_quietly(self._conn)
        self._conn = None

    def _mail_options(self, conn: smtplib.SMTP, sender: str, message: Message) -> list[str]:
        """SMTPUTF8 where an address needs it, 8BITMIME where the body needs it."""
        options: list[str] = []
        addresses_ascii = sender.isascii() and all(r.isascii() for r in message.recipients)
        if not addresses_ascii:
            if not conn.has_extn("smtputf8"):
                raise PermanentFailure("the server does not offer SMTPUTF8 for this address")
            options.append("SMTPUTF8")
        if not message.data.isascii() and conn.has_extn("8bitmime"):
            options.append("BODY=8BITMIME")
        return options

    def _transaction(self, message: Message) -> None:
        """MAIL, RCPT, DATA; reconnect once if the connection died while idle."""
        assert self._conn is not None
        sender = self.envelope_from or message.sender
        if self._conn.has_extn("pipelining"):
            self._pipelined(sender, message)
            return
        try:
            options = self._mail_options(self._conn, sender, message)
            code, reply = self._conn.mail(sender, options)
            if code == 421:
                # The server said goodbye while we were idle (its time-out).
                raise smtplib.SMTPServerDisconnected(_text(reply))
        except smtplib.SMTPServerDisconnected:
            # Dropped while idle: nothing of this message was sent yet, so retrying is safe.
            self._drop()
            self._conn = self._connect()
            options = self._mail_options(self._conn, sender, message)
            code, reply = self._conn.mail(sender, options)
        conn = self._conn
        if code != 250:
            self._reset(conn)
            raise classify(code, reply, Stage.MAIL)
        for recipient in message.recipients:
            code, reply = conn.rcpt(recipient)
            if code not in (250, 251):
                self._reset(conn)
                raise classify(code, reply, Stage.RCPT)
        try:
            code, reply = conn.data(message.data)
        except smtplib.SMTPServerDisconnected as exc:
            # After the final dot we cannot know whether it was accepted: retry later, same
            # Message-ID, so a duplicate is recognisable.
            self._drop()
            raise TemporaryFailure(f"connection dropped during DATA: {exc}") from exc
        except smtplib.SMTPDataError as exc:
            self._reset(conn)
            raise classify(exc.smtp_code, exc.smtp_error, Stage.DATA) from exc
        if code != 250:
            self._reset(conn)
            raise classify(code, reply, Stage.DATA)

    def _envelope(self, sender: str, message: Message) -> tuple[smtplib.SMTP, Reply]:
        """Write MAIL, RCPT and DATA at once (RFC 2920) and read MAIL's reply."""
        assert self._conn is not None
        conn = self._conn
        options = self._mail_options(conn, sender, message)
        encoding = "utf-8" if "SMTPUTF8" in options else "ascii"
        lines = [" ".join([f"MAIL FROM:{_path(sender)}", *options])]
        lines += [f"RCPT TO:{_path(r)}" for r in message.recipients]
        lines.append("DATA")
        conn.send(("\r\n".join(lines) + "\r\n").encode(encoding))
        code, reply = conn.getreply()
        if code == 421:
            # The server said goodbye while we were idle (its time-out).
            raise smtplib.SMTPServerDisconnected(_text(reply))
        return conn, (code, reply)

    def _pipelined(self, sender: str, message: Message) -> None:
        """One round trip for the envelope and one for the message, instead of four."""
        try:
            conn, mail = self._envelope(sender, message)
        except smtplib.SMTPServerDisconnected:
            # Dropped while idle: nothing of this message was sent yet, so retrying is safe.
            self._drop()
            self._conn = self._connect()
            conn, mail = self._envelope(sender, message)
        # Every reply is read, whatever came before, so the next message's replies stay in step.
        rcpts = [conn.getreply() for _ in message.recipients]
        data = conn.getreply()
        # Each reply is judged by the command it answers, though they all came back together.
        refused = (
            classify(*mail, Stage.MAIL)
            if mail[0] != 250
            else next((classify(*r, Stage.RCPT) for r in rcpts if r[0] not in (250, 251)), None)
        )
        if refused is None and data[0] != 354:
            refused = classify(*data, Stage.DATA)
        if refused is not None:
            if data[0] == 354:
                # The server waits for a message we will not send: closing is the only way
                # out that delivers nothing.
                self._drop()
            else:
                self._reset(conn)
            raise refused
        try:
            conn.send(_dot_stuffed(message.data))
            code, reply = conn.getreply()
        except smtplib.SMTPServerDisconnected as exc:
            # After the final dot we cannot know whether it was accepted: retry later, same
            # Message-ID, so a duplicate is recognisable.
            self._drop()
            raise TemporaryFailure(f"connection dropped during DATA: {exc}") from exc
        if code != 250:
            self._reset(conn)
            raise classify(code, reply, Stage.DATA)

    def _reset(self, conn: smtplib.SMTP) -> None:
        """End a refused transaction so the connection can carry the next message."""
        try:
            conn.rset()
        except (OSError, smtplib.SMTPException):
            self._drop()


def _path(address: str) -> str:
    """An address as MAIL FROM and RCPT TO carry it; plain ones without the header parser,
    which took a sixth of a message's time."""
    if _PLAIN_ADDRESS.fullmatch(address):
        return f"<{address}>"
    return smtplib.quoteaddr(address)


def _dot_stuffed(data: bytes) -> bytes:
    """The message as DATA carries it: leading dots doubled, ending in CRLF "." CRLF."""
    stuffed = data.replace(b"\n.", b"\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    return stuffed + b".\r\n"


def _close_quietly(conn: smtplib.SMTP | None) -> None:
    """Close a connection without caring whether it is still alive."""
    if conn is not None:
        with contextlib.suppress(OSError):
            conn.close()
