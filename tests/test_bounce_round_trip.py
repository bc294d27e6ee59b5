"""A digest goes out, bounces and a complaint come back over SMTP, the next digest skips them."""

import os
import signal
import smtplib
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from mailer.extensions import db
from mailer.models import Bounce, InboundReport, Suppression
from tests.factories import Workers, add_digest, add_subscribers, wait_until
from tests.smtp_server import ScriptedSMTPServer, free_port

CORPUS = Path(__file__).parent / "data" / "bounces"
BOUNCE_ADDRESS = "bounces@news.example.org"


def _sample(name: str, verp: str, message_id: str) -> bytes:
    text = (CORPUS / name).read_text().format(verp=verp, forged_verp=verp, message_id=message_id)
    return text.replace("\n", "\r\n").encode()


def _bounce_server(workers: Workers, *extra: str) -> tuple[int, object]:
    port = free_port()
    proc = workers.start(
        "bounce-server",
        "--listen",
        f"127.0.0.1:{port}",
        *extra,
        MAILER_BOUNCE_ADDRESS=BOUNCE_ADDRESS,
    )

    def listening() -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    wait_until(listening, 30, "the bounce server to listen")
    return port, proc


def _deliver(workers: Workers) -> None:
    proc = workers.start("deliver", MAILER_BOUNCE_ADDRESS=BOUNCE_ADDRESS)
    assert proc.wait(timeout=120) == 0, workers.log(proc)


def _count(model: type) -> int:
    db.session.rollback()
    return int(db.session.scalar(select(func.count()).select_from(model)) or 0)


def test_dead_and_complaining_addresses_are_suppressed_counted_and_not_mailed_again(
    app: Flask,
    admin_client: FlaskClient,
    workers: Workers,
    smtp_server: ScriptedSMTPServer,
) -> None:
    now = datetime.now(UTC)  # `mailer deliver` sends on its own clock
    with app.app_context():
        add_subscribers(5, now=now)
        first = add_digest("Week 1", now=now)
    _deliver(workers)
    sent = {r.rcpt_tos[0]: r for r in smtp_server.wait_for(5)}
    for received in sent.values():
        assert received.mail_from.startswith("bounces+")
        assert received.mail_from.endswith("@news.example.org")
        assert received.message["From"] == "Documentaries <newsletter@localhost>"

    port, _ = _bounce_server(workers)
    dead, gone, complainer = (f"reader0000{i}@example.org" for i in range(3))
    with smtplib.SMTP("127.0.0.1", port) as relay:
        for address, sample in (
            (dead, "postfix_user_unknown.eml"),
            (gone, "gmail_no_such_user.eml"),
            (complainer, "yahoo_arf.eml"),
        ):
            original = sent[address]
            relay.sendmail(
                "",
                [original.mail_from],
                _sample(sample, original.mail_from, original.message["Message-ID"]),
            )
        # A forged return address is taken in but counts for nothing.
        forged = sent["reader00003@example.org"].mail_from
        forged = forged[: forged.index("-") + 1] + "0" * 16 + forged[forged.index("@") :]
        relay.sendmail("", [forged], _sample("postfix_user_unknown.eml", forged, "<x@y>"))
        # Mail for any other domain is refused.
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            relay.sendmail("", ["postmaster@elsewhere.example"], b"Subject: hi\r\n\r\nhi\r\n")

    with app.app_context():
        wait_until(lambda: _count(Bounce) == 3 and _count(InboundReport) == 4, 30, "3 bounces")
        reasons = dict(db.session.execute(select(Suppression.email, Suppression.reason)).all())
        assert reasons == {dead: "hard_bounce", gone: "hard_bounce", complainer: "complaint"}
        ignored = db.session.scalars(select(InboundReport.status).order_by(InboundReport.id)).all()
        assert ignored == ["parsed", "parsed", "parsed", "ignored"]

    page = admin_client.get(f"/admin/digests/{first}").get_data(as_text=True)
    assert "2 bounces (40.0 %)" in page and "1 complaint (20.0 %)" in page

    with app.app_context():
        add_digest("Week 2", now=datetime.now(UTC))
    _deliver(workers)
    week_two = {r.rcpt_tos[0] for r in smtp_server.wait_for(7) if r.message["Subject"] == "Week 2"}
    assert week_two == {"reader00003@example.org", "reader00004@example.org"}


def test_a_bounce_server_killed_after_journaling_parses_on_restart(
    app: Flask, workers: Workers, smtp_server: ScriptedSMTPServer
) -> None:
    now = datetime.now(UTC)
    with app.app_context():
        add_subscribers(1, now=now)
        add_digest("Week 1", now=now)
    _deliver(workers)
    [original] = smtp_server.wait_for(1)
    raw = _sample("postfix_user_unknown.eml", original.mail_from, original.message["Message-ID"])

    # Killed in the middle of a message: no 250 was given, so the relay keeps it and retries.
    port, proc = _bounce_server(workers, "--journal-only")
    with socket.create_connection(("127.0.0.1", port)) as conn:
        for line in (
            b"EHLO relay\r\n",
            b"MAIL FROM:<>\r\n",
            f"RCPT TO:<{original.mail_from}>\r\n".encode(),
            b"DATA\r\n",
        ):
            conn.sendall(line)
        conn.sendall(raw[: len(raw) // 2])
        os.kill(proc.pid, signal.SIGKILL)  # type: ignore[attr-defined]
    proc.wait()  # type: ignore[attr-defined]

    # Killed after the 250 but before parsing: the journal holds it, pending.
    port, proc = _bounce_server(workers, "--journal-only")
    for _ in range(2):  # the relay's retry, and a duplicate: one report
        with smtplib.SMTP("127.0.0.1", port) as relay:
            relay.sendmail("", [original.mail_from], raw)
    os.kill(proc.pid, signal.SIGKILL)  # type: ignore[attr-defined]
    proc.wait()  # type: ignore[attr-defined]
    with app.app_context():
        assert db.session.scalars(select(InboundReport.status)).all() == ["pending"]
        assert _count(Bounce) == 0

    _bounce_server(workers)
    with app.app_context():
        wait_until(lambda: _count(Bounce) == 1, 30, "the journaled report to be parsed")
        assert db.session.scalars(select(InboundReport.status)).all() == ["parsed"]
