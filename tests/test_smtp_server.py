"""The scripted SMTP test server itself answers as scripted."""

import smtplib

import pytest


def test_accepts_and_records(smtp_server) -> None:
    with smtplib.SMTP("127.0.0.1", smtp_server.port) as conn:
        conn.sendmail("a@example.org", ["b@example.org"], b"Subject: hi\r\n\r\nbody\r\n")
    (got,) = smtp_server.wait_for(1)
    assert got.rcpt_tos == ["b@example.org"]
    assert got.message["Subject"] == "hi"


def test_scripted_refusal(smtp_server) -> None:
    smtp_server.answer("gone@example.org", "550 5.1.1 no such user")
    with (
        smtplib.SMTP("127.0.0.1", smtp_server.port) as conn,
        pytest.raises(smtplib.SMTPRecipientsRefused),
    ):
        conn.sendmail("a@example.org", ["gone@example.org"], b"Subject: x\r\n\r\nx\r\n")
