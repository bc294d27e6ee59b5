"""The naive way: per subscriber, render Jinja templates, build an EmailMessage, connect, send."""

from __future__ import annotations

import smtplib
import ssl
import time
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from typing import Any

from itsdangerous import URLSafeTimedSerializer
from jinja2 import Environment, FileSystemLoader, select_autoescape

from .common import BENCH_DIR, FROM, INTRO, SECRET, Row, Sink, films, note_for

BASE_URL = "https://docs.bench.example"
POSTAL = "1 Bench Street, 00000 Loopback"
SUBJECT = "Ten documentaries about North Korea"
WIRE_POLICY = SMTP.clone(max_line_length=998)


def environment() -> Environment:
    """The Jinja environment of the benchmark's digest templates."""
    return Environment(
        loader=FileSystemLoader(str(BENCH_DIR / "templates")),
        autoescape=select_autoescape(["html"]),
    )


def digest_context() -> dict[str, Any]:
    """What every copy of the digest shares."""
    featured = [
        {**film, "description": summary(film["description"]), "note": note_for(film)}
        for film in films()
    ]
    return {
        "subject": SUBJECT,
        "preheader": "Our picks this week",
        "intro": INTRO,
        "films": featured,
        "base_url": BASE_URL,
        "postal_address": POSTAL,
    }


def summary(description: str, paragraphs: int = 1) -> str:
    """The first paragraphs of a film's description, as a digest shows it."""
    return "\n\n".join(description.split("\n\n")[:paragraphs])


def build_message(
    env: Environment, signer: URLSafeTimedSerializer, shared: dict[str, Any], number: int
) -> EmailMessage:
    """One personalised digest the way most Python code builds it."""
    token = signer.dumps([number, "nonce"])
    unsubscribe = f"{BASE_URL}/unsubscribe/{token}"
    context = {
        **shared,
        "unsubscribe_url": unsubscribe,
        "preferences_url": f"{BASE_URL}/preferences/{token}",
    }
    message = EmailMessage(policy=WIRE_POLICY)
    message["From"] = FROM
    message["To"] = f"reader{number}@bench.example"
    message["Subject"] = SUBJECT
    message["Date"] = format_datetime(time_now())
    message["Message-ID"] = make_msgid(domain="bench.example")
    message["List-Unsubscribe"] = f"<{unsubscribe}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(env.get_template("digest.txt").render(context))
    message.add_alternative(env.get_template("digest.html").render(context), subtype="html")
    return message


def time_now() -> Any:
    """The current time (aware UTC)."""
    from datetime import UTC, datetime

    return datetime.now(UTC)


def reference_message() -> bytes:
    """The pre-rendered digest bytes for the limit measurement (smtp-source sends these)."""
    env = environment()
    signer = URLSafeTimedSerializer(SECRET, salt="mailer.unsubscribe")
    return build_message(env, signer, digest_context(), 1).as_bytes()


def run(sink: Sink, count: int, section: str = "naive") -> list[Row]:
    """Send `count` digests the naive way and report messages per second."""
    env = environment()
    signer = URLSafeTimedSerializer(SECRET, salt="mailer.unsubscribe")
    shared = digest_context()
    size = 0
    start = time.perf_counter()
    for number in range(1, count + 1):
        message = build_message(env, signer, shared, number)
        with smtplib.SMTP(sink.host, sink.port) as conn:
            if sink.cafile:
                conn.starttls(context=ssl.create_default_context(cafile=sink.cafile))
            conn.send_message(message)
        if number == 1:
            size = len(message.as_bytes())
    elapsed = time.perf_counter() - start
    return [
        Row(
            section,
            "naive: Jinja + EmailMessage + new connection per message",
            count / elapsed,
            "msg/s",
            f"{count} messages of {size // 1024} KiB, 1 connection at a time",
            {"count": count, "seconds": elapsed, "bytes": size},
            key=section,
        )
    ]
