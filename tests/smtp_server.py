"""A real SMTP server (aiosmtpd) on 127.0.0.1 whose replies tests can script per recipient."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

# A rule maps a recipient address to a reply, or to "drop" (close the connection after the
# final dot without answering), "hang" (never answer, so the client times out) or "close"
# (accept the message, then close the connection, as a server's idle time-out would).
Rule = Callable[[str], str | None]


@dataclass
class Received:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    peer: Any = None
    mail_options: list[str] = field(default_factory=list)
    # When the server accepted it (time.monotonic(), taken as the final 250 is returned).
    accepted_at: float = field(default_factory=time.monotonic)

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class ScriptedHandler:
    """Accepts mail unless a rule says otherwise; keeps what it accepted."""

    received: list[Received] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    # Replies to the message itself (after the final dot), by recipient.
    data_rules: list[Rule] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Advertised as real servers do; aiosmtpd answers pipelined commands in order either way.
    pipelining: bool = True

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        if self.pipelining:
            responses.insert(1, "250-PIPELINING")
        return responses

    def reply_for(self, address: str) -> str | None:
        for rule in self.rules:
            reply = rule(address)
            if reply is not None:
                return reply
        return None

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self.reply_for(address)
        if reply is not None and reply not in ("drop", "hang", "close"):
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        action = next((self.reply_for(r) for r in envelope.rcpt_tos if self.reply_for(r)), None)
        if action == "hang":
            await asyncio.sleep(3600)
        if action == "drop":
            assert server.transport is not None
            server.transport.close()
            return "421 closing"
        refusal = next(
            (reply for rule in self.data_rules for r in envelope.rcpt_tos if (reply := rule(r))),
            None,
        )
        if refusal is not None:
            return refusal
        content = envelope.original_content or envelope.content or b""
        assert isinstance(content, bytes)
        with self.lock:
            self.received.append(
                Received(
                    str(envelope.mail_from),
                    list(envelope.rcpt_tos),
                    content,
                    session.peer,
                    list(envelope.mail_options),
                )
            )
        if action == "close":
            transport = server.transport
            assert transport is not None
            # Runs after the reply is written; close() flushes it first.
            asyncio.get_running_loop().call_soon(transport.close)
        return "250 Message accepted"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ScriptedSMTPServer:
    """Start with ``start()``; ``url`` is the smtp:// URL of the running server."""

    def __init__(self, *, pipelining: bool = True, **controller_kwargs: Any) -> None:
        self.handler = ScriptedHandler(pipelining=pipelining)
        self.controller = Controller(
            self.handler, hostname="127.0.0.1", port=free_port(), **controller_kwargs
        )

    def start(self) -> ScriptedSMTPServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    @property
    def port(self) -> int:
        return int(self.controller.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def received(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.received)

    def answer(self, address: str, reply: str) -> None:
        """Answer ``reply`` ("451 4.3.0 try later", "drop", "hang", ...) for one recipient."""
        self.handler.rules.append(lambda rcpt: reply if rcpt == address else None)

    def answer_data(self, rule: Rule) -> None:
        """Answer the message (after its final dot) by a rule over its recipient, e.g. a 554."""
        self.handler.data_rules.append(rule)

    def add_rule(self, rule: Rule) -> None:
        """Answer by any rule over the recipient address."""
        self.handler.rules.append(rule)

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        """Wait until at least ``count`` messages arrived; return them all."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.received) >= count:
                return self.received
            time.sleep(0.05)
        raise AssertionError(f"expected {count} messages, got {len(self.received)}")
