"""A refusal of the message is not a refusal of the recipient: who an SMTP refusal blames."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from mailer.api_tokens import create_api_token
from mailer.backends import (
    Message,
    MessageRefused,
    PermanentFailure,
    SenderMisconfigured,
    TemporaryFailure,
    backend_from_url,
)
from mailer.backends.smtp import Stage, classify
from mailer.digests import finish_digests
from mailer.extensions import db
from mailer.journal import enqueue_digest
from mailer.models import Delivery, DeliveryStatus, Digest, DigestStatus, Suppression
from mailer.sending import Sender, claim_batch
from tests.factories import add_digest, add_subscribers
from tests.smtp_server import ScriptedSMTPServer

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
RECIPIENT, MESSAGE, SENDER, LATER = (
    PermanentFailure,
    MessageRefused,
    SenderMisconfigured,
    TemporaryFailure,
)
GMAIL_NO_SUCH_USER = (
    b"5.1.1 The email account that you tried to reach does not exist. Please try\n"
    b"5.1.1 double-checking the recipient's email address for typos."
)


@pytest.mark.parametrize(
    ("code", "reply", "stage", "kind", "enhanced"),
    [
        # RFC 3463 X.1.x addressing and X.2.x mailbox: the recipient, at any stage.
        (550, "5.1.1 no such user", Stage.RCPT, RECIPIENT, "5.1.1"),
        (550, "5.1.1 no such user", Stage.DATA, RECIPIENT, "5.1.1"),
        (553, "5.1.3 bad address syntax", Stage.RCPT, RECIPIENT, "5.1.3"),
        (550, "5.2.1 mailbox disabled", Stage.DATA, RECIPIENT, "5.2.1"),
        (552, "5.2.2 mailbox full", Stage.RCPT, RECIPIENT, "5.2.2"),
        # ... but 5.2.3 is the message's length over the mailbox's limit.
        (552, "5.2.3 message length exceeds administrative limit", Stage.DATA, MESSAGE, "5.2.3"),
        # X.3.x mail system and X.6.x media: the message, wherever they come.
        (552, "5.3.4 message too big for system", Stage.DATA, MESSAGE, "5.3.4"),
        (552, "5.3.4 message size exceeds fixed limit", Stage.MAIL, MESSAGE, "5.3.4"),
        (554, "5.6.0 Message content rejected", Stage.DATA, MESSAGE, "5.6.0"),
        (550, "5.6.1 media not supported", Stage.RCPT, MESSAGE, "5.6.1"),
        # 5.7.1: about the recipient only when given at RCPT for them.
        (550, "5.7.1 recipient rejected by policy", Stage.RCPT, RECIPIENT, "5.7.1"),
        (550, "5.7.1 message rejected as spam", Stage.DATA, MESSAGE, "5.7.1"),
        (550, "5.7.1 sender rejected", Stage.MAIL, SENDER, "5.7.1"),
        # Other X.7.x security codes, 530/535 and refusals of MAIL or the greeting: ours.
        (550, "5.7.26 unauthenticated mail is prohibited", Stage.RCPT, SENDER, "5.7.26"),
        (550, "5.7.26 unauthenticated mail is prohibited", Stage.DATA, SENDER, "5.7.26"),
        (535, "5.7.8 authentication failed", Stage.CONNECT, SENDER, "5.7.8"),
        (530, "authentication required", Stage.MAIL, SENDER, None),
        (553, "sender address rejected", Stage.MAIL, SENDER, None),
        (554, "no SMTP service here", Stage.CONNECT, SENDER, None),
        # A bare 5xx: the recipient at RCPT, the message at DATA.
        (550, "no such user here", Stage.RCPT, RECIPIENT, None),
        (554, "transaction failed", Stage.DATA, MESSAGE, None),
        (500, "", Stage.DATA, MESSAGE, None),
        (552, "too much mail data", Stage.DATA, MESSAGE, None),
        (554, "5.5.0 transaction failed", Stage.DATA, MESSAGE, "5.5.0"),
        # 4xx is temporary at every stage; a code whose class disagrees is not believed.
        (421, "4.7.0 too many connections", Stage.CONNECT, LATER, "4.7.0"),
        (452, "4.2.2 mailbox full", Stage.RCPT, LATER, "4.2.2"),
        (451, "4.3.0 try later", Stage.DATA, LATER, "4.3.0"),
        (550, "4.1.1 confused server", Stage.DATA, MESSAGE, None),
        # Multi-line replies, as smtplib joins them: the code comes from the first line.
        (550, GMAIL_NO_SUCH_USER, Stage.RCPT, RECIPIENT, "5.1.1"),
        (550, GMAIL_NO_SUCH_USER, Stage.DATA, RECIPIENT, "5.1.1"),
        (
            554,
            b"5.6.0 Message content rejected\n5.6.0 see our policy page",
            Stage.DATA,
            MESSAGE,
            "5.6.0",
        ),
        (550, b"5.7.1\n5.7.1 recipient not allowed", Stage.RCPT, RECIPIENT, "5.7.1"),
    ],
)
def test_who_a_reply_blames(
    code: int, reply: str | bytes, stage: Stage, kind: type[Exception], enhanced: str | None
) -> None:
    failure = classify(code, reply, stage)
    assert type(failure) is kind
    assert (failure.smtp_code, failure.enhanced_status, failure.stage) == (code, enhanced, stage)
    assert "\n" not in str(failure)


def test_a_multi_line_reply_reads_as_one_line() -> None:
    failure = classify(550, GMAIL_NO_SUCH_USER, Stage.RCPT)
    assert str(failure) == (
        "550 5.1.1 The email account that you tried to reach does not exist. Please try "
        "double-checking the recipient's email address for typos."
    )


def message(to: str) -> Message:
    """A small, valid message."""
    data = (
        f"From: news@example.org\r\nTo: {to}\r\nSubject: hi\r\n"
        f"Message-ID: <1@example.org>\r\n\r\nhello\r\n"
    ).encode()
    return Message("news@example.org", (to,), data, "<1@example.org>")


MULTI_LINE_DATA = "554-5.6.0 Message content rejected\r\n554 5.6.0 see https://example.org/policy"
MULTI_LINE_RCPT = "550-5.1.1 The account does not exist.\r\n550 5.1.1 Please check the address."


@pytest.mark.parametrize("pipelining", [True, False])
def test_each_reply_is_judged_by_the_command_it_answers(pipelining: bool) -> None:
    """Over a real server, pipelined or not: RCPT and DATA refusals land in their own class."""
    server = ScriptedSMTPServer(pipelining=pipelining).start()
    server.answer("bare-rcpt@example.org", "550 no such user here")
    server.answer("policy-rcpt@example.org", "550 5.7.1 recipient rejected by policy")
    server.answer("multi-rcpt@example.org", MULTI_LINE_RCPT)
    at_data = {
        "bare-data@example.org": "554 transaction failed",
        "content@example.org": MULTI_LINE_DATA,
        "big@example.org": "552 5.3.4 message too big",
        "gone-data@example.org": "550 5.1.1 no such user",
        "spam@example.org": "550 5.7.1 message rejected as spam",
    }
    server.answer_data(at_data.get)
    expected = {
        "bare-rcpt@example.org": (RECIPIENT, Stage.RCPT),
        "policy-rcpt@example.org": (RECIPIENT, Stage.RCPT),
        "multi-rcpt@example.org": (RECIPIENT, Stage.RCPT),
        "bare-data@example.org": (MESSAGE, Stage.DATA),
        "content@example.org": (MESSAGE, Stage.DATA),
        "big@example.org": (MESSAGE, Stage.DATA),
        "gone-data@example.org": (RECIPIENT, Stage.DATA),
        "spam@example.org": (MESSAGE, Stage.DATA),
    }
    got: dict[str, tuple[type[Exception], str | None]] = {}
    try:
        with backend_from_url(server.url) as backend:
            for to in expected:
                with pytest.raises((PermanentFailure, MessageRefused)) as caught:
                    backend.send(message(to))
                got[to] = (type(caught.value), caught.value.stage)
                if to == "content@example.org":
                    assert str(caught.value) == (
                        "554 5.6.0 Message content rejected see https://example.org/policy"
                    )
            backend.send(message("fine@example.org"))  # the session is still in step
    finally:
        server.stop()
    assert got == expected
    assert [r.rcpt_tos for r in server.received] == [["fine@example.org"]]


@pytest.fixture
def smtp_server() -> Iterator[ScriptedSMTPServer]:
    server = ScriptedSMTPServer().start()
    yield server
    server.stop()


def _statuses(digest_id: int) -> dict[str, int]:
    db.session.rollback()
    return dict(
        db.session.execute(
            select(Delivery.status, func.count())
            .where(Delivery.digest_id == digest_id)
            .group_by(Delivery.status)
        ).all()
    )


def test_refused_messages_blame_nobody_and_pause_the_digest(
    app: Flask, admin_client: FlaskClient, smtp_server: ScriptedSMTPServer
) -> None:
    """554 5.6.0 for every message: none suppressed; after N in a row the digest pauses."""
    app.config["MAILER_PAUSE_AFTER_CONNECTION_ERRORS"] = 4
    smtp_server.answer_data(lambda rcpt: "554 5.6.0 Message content rejected")
    with app.app_context():
        add_subscribers(10, now=NOW)
        digest_id = add_digest("Rejected content", now=NOW, status=DigestStatus.SENDING)
        enqueue_digest(digest_id, NOW)
        db.session.commit()
        sender = Sender("w", backend_from_url(smtp_server.url), lambda: NOW)
        stats = sender.send_batch(claim_batch("w", NOW, 50, 60))
        assert (stats.sent, stats.failed, stats.released) == (0, 4, 6)
        finish_digests(NOW)
        assert _statuses(digest_id) == {DeliveryStatus.FAILED: 4, DeliveryStatus.QUEUED: 6}
        assert db.session.scalar(select(func.count()).select_from(Suppression)) == 0
        notes = set(
            db.session.scalars(
                select(Delivery.last_error).where(Delivery.status == DeliveryStatus.FAILED)
            )
        )
        assert notes == {"message refused: 554 5.6.0 Message content rejected"}
        digest = db.session.get(Digest, digest_id)
        assert digest is not None and digest.status == DigestStatus.PAUSED
        reason = (
            "4 messages in a row refused by the mail server; "
            "last: 554 5.6.0 Message content rejected"
        )
        assert digest.pause_reason == reason
        _, token = create_api_token("cms", NOW)
        db.session.commit()
    page = admin_client.get(f"/admin/digests/{digest_id}/delivery").get_data(as_text=True)
    assert f"Paused: {reason}" in page
    api = admin_client.get(
        f"/api/v1/digests/{digest_id}", headers={"Authorization": f"Bearer {token}"}
    )
    assert api.get_json()["pause_reason"] == reason


def test_a_sent_message_breaks_the_run_of_refusals(
    app: Flask, smtp_server: ScriptedSMTPServer
) -> None:
    """Refusals of a few messages (with sends between) fail those only; the digest finishes."""
    app.config["MAILER_PAUSE_AFTER_CONNECTION_ERRORS"] = 3
    smtp_server.answer_data(
        lambda rcpt: "552 5.3.4 message too big" if rcpt[-13] in "02468" else None
    )
    smtp_server.answer("reader00003@example.org", "550 5.1.1 no such user")
    with app.app_context():
        add_subscribers(10, now=NOW)
        digest_id = add_digest("Sometimes too big", now=NOW, status=DigestStatus.SENDING)
        enqueue_digest(digest_id, NOW)
        db.session.commit()
        sender = Sender("w", backend_from_url(smtp_server.url), lambda: NOW)
        stats = sender.send_batch(claim_batch("w", NOW, 50, 60))
        assert (stats.sent, stats.failed) == (4, 6)
        finish_digests(NOW)
        assert _statuses(digest_id) == {DeliveryStatus.SENT: 4, DeliveryStatus.FAILED: 6}
        digest = db.session.get(Digest, digest_id)
        assert digest is not None and digest.status == DigestStatus.SENT
        suppressed = db.session.scalars(select(Suppression.email)).all()
        assert suppressed == ["reader00003@example.org"]
