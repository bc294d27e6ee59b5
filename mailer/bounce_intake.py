"""Bounce intake: journal each report raw, then parse it (DSN, ARF, the odd ones) into bounces.

Reports arrive three ways: the bounce server (inbound SMTP), a mailbox (IMAP or Maildir) and
the providers' webhooks. All of them journal first and parse after, so a report that cannot
be parsed, or a crash in between, loses nothing: the journal keeps it for the admin and for
`mailer bounces process`.
"""

from __future__ import annotations

import contextlib
import email
import hashlib
import imaplib
import logging
import mailbox
import re
import signal
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from email.message import Message as EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from flufl.bounce import all_failures
from sqlalchemy import select

from .bounces import BounceKind, record_bounce
from .config import ConfigError
from .extensions import db
from .models import Delivery, InboundReport, ReportStatus, utcnow
from .verp import bounce_address, delivery_of_verp, is_bounce_domain

log = logging.getLogger(__name__)

DIAGNOSTIC_LINES = 6
MAX_REPORT_BYTES = 10 * 1024 * 1024  # a bounce returns at most the original and some headers
# Enhanced codes that fail the message, not the address: counted as soft.
SOFT_PERMANENT = re.compile(r"^5\.(2\.2|7\.\d+|3\.4)$")
_ANGLE = re.compile(r"<([^<>\s]+)>")
_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")


class ReportUnreadable(ValueError):
    """A report whose bytes are not a message we can read."""


@dataclass(frozen=True)
class Finding:
    """One bounce a report tells of, tied to one of our deliveries."""

    delivery_id: int
    kind: BounceKind
    status: str
    diagnostic: str
    source: str  # dsn, arf, or the detector's own word for a non-standard bounce


# --- parsing ------------------------------------------------------------------------------------


def parse_report(raw: bytes, envelope_to: str = "") -> list[Finding]:
    """The bounces a raw report tells of; a report that names none of our deliveries tells none.

    The delivery is found by its signed VERP address (the envelope recipient, the report's own
    headers, an ARF report's Original-Mail-From, the returned message's Return-Path), else by
    the returned message's Message-ID. A forged VERP address names nothing.
    """
    try:
        message = email.message_from_bytes(raw)
    except Exception as exc:  # the stdlib parser is lenient; this is for the truly broken
        raise ReportUnreadable(f"not a message: {exc}") from None
    if message.get_content_type() == "multipart/report":
        report_type = str(message.get_param("report-type") or "").lower()
        if report_type == "feedback-report":
            return _complaint(message, envelope_to)
        if report_type == "delivery-status" and _part(message, "message/delivery-status"):
            return _dsn(message, envelope_to)  # delayed or relayed: nothing failed yet
    return _non_standard(message, envelope_to)


def _part(message: EmailMessage, content_type: str) -> EmailMessage | None:
    """The first part of a type, anywhere in the message."""
    for part in message.walk():
        if part.get_content_type() == content_type:
            return part
    return None


def _returned_headers(message: EmailMessage) -> EmailMessage | None:
    """The returned original (or its headers), as a message."""
    for content_type in ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers"):
        part = _part(message, content_type)
        if part is None:
            continue
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], EmailMessage):
            return payload[0]
        if isinstance(payload, str):
            return email.message_from_string(payload)
    return None


def _verp_candidates(message: EmailMessage, envelope_to: str) -> Iterator[str]:
    """Addresses that may be our VERP return address, the likeliest first."""
    if envelope_to:
        yield envelope_to
    for header in ("Delivered-To", "X-Original-To", "Envelope-To", "To", "X-Failed-Recipients"):
        for value in message.get_all(header) or []:
            yield from _addresses_in(str(value))
    original = _returned_headers(message)
    if original is not None:
        yield from _addresses_in(str(original.get("Return-Path", "")))


def _addresses_in(value: str) -> Iterator[str]:
    """Each address in a header value, bracketed or bare."""
    bracketed = _ANGLE.findall(value)
    yield from bracketed or [word.strip(",;") for word in value.split() if "@" in word]


def _delivery_of(message: EmailMessage, envelope_to: str, extra: list[str]) -> int | None:
    """Our delivery this report is about: by a valid VERP address, else by Message-ID."""
    candidates = [*extra, *_verp_candidates(message, envelope_to)]
    verp_seen = False
    for address in candidates:
        if is_bounce_domain(address):
            verp_seen = True
            delivery_id = delivery_of_verp(address)
            if delivery_id is not None:
                return delivery_id
    if verp_seen and envelope_to:
        return None  # sent to a return address that we did not sign: forged, ignore
    original = _returned_headers(message)
    message_id = str(original.get("Message-ID", "")).strip() if original is not None else ""
    if not message_id:
        return None
    return db.session.scalar(select(Delivery.id).where(Delivery.message_id == message_id))


def _dsn(message: EmailMessage, envelope_to: str) -> list[Finding]:
    """An RFC 3464 delivery status notification: failed recipients, with Status and Diagnostic."""
    part = _part(message, "message/delivery-status")
    if part is None:
        return []
    payload = part.get_payload()
    blocks: list[EmailMessage]
    if isinstance(payload, str):  # some relays send it as text: parse the blocks ourselves
        blocks = [email.message_from_string(b) for b in re.split(r"\r?\n\r?\n", payload) if b]
    else:
        blocks = [block for block in payload if isinstance(block, EmailMessage)]
    failed = [
        block for block in blocks[1:] if str(block.get("Action", "")).strip().lower() == "failed"
    ]
    if not failed:
        return []
    delivery_id = _delivery_of(message, envelope_to, [])
    if delivery_id is None:
        return []
    # One delivery has one recipient: the first failed block is its (a relay that expanded
    # an alias may list more; the VERP address ties them all to this one delivery).
    block = failed[0]
    status = str(block.get("Status", "")).strip().split()[0] if block.get("Status") else ""
    diagnostic = " ".join(str(block.get("Diagnostic-Code", "")).split())
    recipient = str(block.get("Final-Recipient", "")).partition(";")[2].strip()
    if recipient:
        diagnostic = f"{recipient}: {diagnostic}" if diagnostic else recipient
    return [Finding(delivery_id, _kind_of(status), status, diagnostic, "dsn")]


def _kind_of(status: str) -> BounceKind:
    """Hard for a permanent failure of the address, soft for anything passing or ambiguous."""
    if status.startswith("5.") and not SOFT_PERMANENT.match(status):
        return BounceKind.HARD
    return BounceKind.SOFT


def _complaint(message: EmailMessage, envelope_to: str) -> list[Finding]:
    """An RFC 5965 feedback report: one complaint about one of our deliveries."""
    part = _part(message, "message/feedback-report")
    if part is None:
        return []
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], EmailMessage):
        fields: EmailMessage = payload[0]
    else:
        fields = email.message_from_string(str(payload))
    feedback_type = str(fields.get("Feedback-Type", "abuse")).strip().lower()
    if feedback_type not in ("abuse", "fraud", "other", "virus", ""):
        return []  # auth-failure and not-spam reports are not complaints about the mail
    extra = [
        *_addresses_in(str(fields.get("Original-Mail-From", ""))),
        *_addresses_in(str(fields.get("Original-Rcpt-To", ""))),
    ]
    delivery_id = _delivery_of(message, envelope_to, extra)
    if delivery_id is None:
        return []
    agent = " ".join(str(fields.get("User-Agent", "")).split())
    diagnostic = f"Feedback-Type: {feedback_type}" + (f" ({agent})" if agent else "")
    return [Finding(delivery_id, BounceKind.COMPLAINT, "", diagnostic, "arf")]


def _non_standard(message: EmailMessage, envelope_to: str) -> list[Finding]:
    """Exchange, qmail and other home-made bounces: flufl.bounce finds the failed address."""
    try:
        temporary, permanent = all_failures(message)
    except Exception as exc:  # a detector tripping on odd input: the report stays readable
        log.warning("bounce detectors failed: %s", exc)
        return []
    if not (temporary or permanent):
        return []
    delivery_id = _delivery_of(message, envelope_to, [])
    if delivery_id is None:
        return []
    kind = BounceKind.HARD if permanent else BounceKind.SOFT
    addresses = sorted(a.decode("utf-8", "replace") for a in (permanent or temporary))
    body = _body_text(message)
    status_match = _STATUS.search(body)
    status = status_match.group(1) if status_match else ""
    if status and kind == BounceKind.HARD:
        kind = _kind_of(status)
    diagnostic = f"{', '.join(addresses)}: {_first_lines(body)}"
    return [Finding(delivery_id, kind, status, diagnostic, "bounce")]


def _body_text(message: EmailMessage) -> str:
    """The first text part of a message, decoded."""
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                return payload.decode(part.get_content_charset() or "utf-8", "replace")
    return ""


def _first_lines(text: str) -> str:
    """The first few non-empty lines, joined: enough to say why."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " / ".join(lines[:DIAGNOSTIC_LINES])[:1000]


# --- the journal --------------------------------------------------------------------------------


def raw_digest(raw: bytes, envelope_to: str = "") -> str:
    """The journal key of a report: the same bytes to the same address are one report."""
    return hashlib.sha256(envelope_to.lower().encode() + b"\n" + raw).hexdigest()


def journal_report(
    raw: bytes, source: str, now: datetime, envelope_to: str = ""
) -> InboundReport | None:
    """Keep a report's raw bytes before anything reads them; None if it was kept before.

    A report counts as kept before when its bytes are, or when a mailbox holds it under a
    Message-ID already journaled (the same bounce read twice). The caller commits.
    """
    digest = raw_digest(raw, envelope_to)
    if db.session.scalar(select(InboundReport.id).where(InboundReport.raw_digest == digest)):
        return None
    message_id = ""
    try:
        message_id = " ".join(str(email.message_from_bytes(raw).get("Message-ID", "")).split())
    except Exception:  # unreadable bytes are journaled all the same, for the admin
        message_id = ""
    message_id = message_id[:255]
    if message_id and not envelope_to:
        duplicate = select(InboundReport.id).where(
            InboundReport.message_id == message_id, InboundReport.envelope_to == ""
        )
        if db.session.scalar(duplicate):
            return None
    report = InboundReport(
        source=source,
        raw=raw,
        raw_digest=digest,
        message_id=message_id,
        envelope_to=envelope_to[:254],
        status=ReportStatus.PENDING,
        received_at=now,
    )
    db.session.add(report)
    db.session.flush()
    return report


def process_report(report: InboundReport, now: datetime) -> int:
    """Parse a journaled report and record its bounces; return how many were new.

    A report that cannot be read is marked failed with the error, and kept. The caller commits.
    """
    try:
        findings = parse_report(report.raw, report.envelope_to)
    except Exception as exc:  # any parser failure is kept for the admin, never lost
        log.warning("inbound report %s cannot be parsed: %s", report.id, exc)
        report.status, report.error, report.parsed_at = ReportStatus.FAILED, str(exc)[:2000], now
        return 0
    recorded = 0
    for finding in findings:
        source = finding.source if report.source == "smtp" else report.source
        bounce = record_bounce(
            delivery_id=finding.delivery_id,
            kind=finding.kind,
            diagnostic=finding.diagnostic,
            status=finding.status,
            when=report.received_at,
            source=source,
            report_id=report.id,
        )
        recorded += bounce is not None
    report.status = ReportStatus.PARSED if findings else ReportStatus.IGNORED
    report.error = "" if findings else "names none of our deliveries (or a forged return address)"
    report.parsed_at = now
    return recorded


def process_pending(now: datetime) -> int:
    """Parse every report still waiting (after a crash, or from a journal-only server)."""
    recorded = 0
    pending = select(InboundReport).where(InboundReport.status == ReportStatus.PENDING)
    for report in db.session.scalars(pending.order_by(InboundReport.id)).all():
        recorded += process_report(report, now)
        db.session.commit()
    return recorded


def take_in(raw: bytes, source: str, now: datetime, envelope_to: str = "") -> int:
    """Journal a report, commit, then parse it and commit again; return the bounces recorded."""
    report = journal_report(raw, source, now, envelope_to)
    db.session.commit()
    if report is None:
        return 0
    recorded = process_report(report, now)
    db.session.commit()
    return recorded


# --- the bounce server (inbound SMTP) -------------------------------------------------------


class BounceHandler:
    """aiosmtpd handler: accepts mail to the VERP domain only, journals it before the 250."""

    def __init__(self, app: Flask, *, parse: bool = True) -> None:
        self.app = app
        self.parse = parse

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        with self.app.app_context():
            if not is_bounce_domain(address):
                return "550 5.1.2 this server takes bounces for its own domain only"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        data = raw if isinstance(raw, bytes) else str(raw).encode("utf-8", "surrogateescape")
        with self.app.app_context():
            now = utcnow()
            try:
                reports = [
                    journal_report(data, "smtp", now, envelope_to=rcpt)
                    for rcpt in envelope.rcpt_tos
                ]
                db.session.commit()
            except Exception:
                db.session.rollback()
                log.exception("cannot journal an inbound report")
                return "451 4.3.0 cannot store the message now; try again later"
            if self.parse:
                for report in reports:
                    if report is not None:
                        _parse_now(report, now)
        return "250 OK: journaled"


def _parse_now(report: InboundReport, now: datetime) -> None:
    """Parse a report just journaled; if that fails it stays pending for the next start."""
    try:
        process_report(report, now)
        db.session.commit()
    except Exception:
        db.session.rollback()
        log.exception("inbound report %s left pending", report.id)


# --- mailboxes: IMAP over TLS and Maildir ------------------------------------------------------


class MailboxError(RuntimeError):
    """The mailbox cannot be read; the message says what to fix."""


def fetch_mailbox(url: str, now: datetime) -> tuple[int, int]:
    """Journal and parse every unseen message of a mailbox; return (new reports, bounces)."""
    parts = urlsplit(url)
    if parts.scheme == "maildir":
        return _fetch_maildir(Path(unquote(parts.path)), now)
    if parts.scheme in ("imaps", "imap"):
        return _fetch_imap(url, now)
    raise MailboxError(
        f"MAILER_BOUNCE_MAILBOX: {parts.scheme or url!r} is not imaps://, imap:// (STARTTLS) "
        "or maildir://"
    )


def _fetch_maildir(path: Path, now: datetime) -> tuple[int, int]:
    """Read the Maildir's new mail, journal each message, then move it to cur as seen."""
    if not (path / "new").is_dir() or not (path / "cur").is_dir():
        raise MailboxError(f"MAILER_BOUNCE_MAILBOX: {path} is not a Maildir (no new/ and cur/)")
    box = mailbox.Maildir(path, factory=None, create=False)
    reports = bounces = 0
    for key in list(box.iterkeys()):
        message = box.get_message(key)
        if "S" in message.get_flags():
            continue
        raw = box.get_bytes(key)
        report = journal_report(raw, "maildir", now)
        db.session.commit()
        if report is not None:
            reports += 1
            bounces += process_report(report, now)
            db.session.commit()
        message.set_subdir("cur")
        message.add_flag("S")
        box[key] = message
    return reports, bounces


def _fetch_imap(url: str, now: datetime) -> tuple[int, int]:
    """Read a folder's unseen mail over TLS, journal each message, then flag it seen."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    folder = unquote(parts.path.lstrip("/")) or "INBOX"
    context = ssl.create_default_context()
    try:
        if parts.scheme == "imaps":
            conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                host, parts.port or 993, ssl_context=context, timeout=60
            )
        else:  # imap:// means STARTTLS: the password never crosses in clear
            conn = imaplib.IMAP4(host, parts.port or 143, timeout=60)
            conn.starttls(ssl_context=context)
        conn.login(user, password)
    except (OSError, imaplib.IMAP4.error) as exc:
        raise MailboxError(f"MAILER_BOUNCE_MAILBOX: cannot sign in to {host}: {exc}") from None
    reports = bounces = 0
    try:
        status, _ = conn.select(_quoted(folder))
        if status != "OK":
            raise MailboxError(f"MAILER_BOUNCE_MAILBOX: no folder {folder!r} on {host}")
        _, found = conn.uid("SEARCH", "UNSEEN")
        for uid in (found[0] or b"").decode().split():
            _, fetched = conn.uid("FETCH", uid, "(BODY.PEEK[])")
            raw = next((item[1] for item in fetched if isinstance(item, tuple)), None)
            if raw is None:
                continue
            report = journal_report(raw, "imap", now)
            db.session.commit()
            if report is not None:
                reports += 1
                bounces += process_report(report, now)
                db.session.commit()
            conn.uid("STORE", uid, "+FLAGS", "(\\Seen)")
    finally:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            conn.logout()
    return reports, bounces


def _quoted(folder: str) -> str:
    """A folder name as an IMAP quoted string."""
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- commands -----------------------------------------------------------------------------------


def _host_port(value: str) -> tuple[str, int]:
    """HOST:PORT, checked."""
    host, _colon, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"give HOST:PORT, e.g. 127.0.0.1:2525, not {value!r}")
    return host.strip("[]"), int(port)


@click.command("bounce-server")
@click.option("--listen", required=True, help="HOST:PORT to take SMTP on, e.g. 0.0.0.0:25")
@click.option(
    "--journal-only",
    is_flag=True,
    help="Only journal what arrives; `mailer bounces process` parses it later.",
)
@with_appcontext
def bounce_server_command(listen: str, journal_only: bool) -> None:
    """Take bounces and complaints over SMTP for the MAILER_BOUNCE_ADDRESS domain."""
    from aiosmtpd.controller import Controller

    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    if bounce_address() is None:
        raise ConfigError("MAILER_BOUNCE_ADDRESS is not set: the bounce server needs its domain")
    host, port = _host_port(listen)
    # Whatever a crash left journaled but unparsed is parsed before anything new arrives.
    left = process_pending(utcnow()) if not journal_only else 0
    handler = BounceHandler(app, parse=not journal_only)
    controller = Controller(
        handler, hostname=host, port=port, data_size_limit=MAX_REPORT_BYTES, decode_data=False
    )
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    controller.start()
    click.echo(f"bounce server listening on {host}:{port} ({left} waiting reports parsed)")
    try:
        stopped.wait()
    finally:
        controller.stop()


@click.group("bounces")
def bounces_cli() -> None:
    """Read bounces from a mailbox, or parse what was journaled."""


@bounces_cli.command("fetch")
@click.option("--mailbox", default="", help="Overrides MAILER_BOUNCE_MAILBOX.")
@with_appcontext
def fetch_command(mailbox: str) -> None:
    """Journal and parse the unseen messages of MAILER_BOUNCE_MAILBOX (IMAP or Maildir)."""
    url = mailbox or current_app.config.get("MAILER_BOUNCE_MAILBOX") or ""
    if not url:
        raise ConfigError("MAILER_BOUNCE_MAILBOX is not set (imaps://USER:PASS@HOST/INBOX, "
                          "imap://… for STARTTLS, or maildir:///path)")  # fmt: skip
    try:
        reports, recorded = fetch_mailbox(url, utcnow())
    except MailboxError as exc:
        raise ConfigError(str(exc)) from None
    click.echo(f"{reports} new reports, {recorded} bounces recorded")


@bounces_cli.command("process")
@with_appcontext
def process_command() -> None:
    """Parse every journaled report still waiting."""
    click.echo(f"{process_pending(utcnow())} bounces recorded")
