"""`mailer bounces fetch` from a Maildir: each bounce counts once, however often it is read."""

import mailbox
import shutil
from datetime import UTC, datetime
from pathlib import Path

from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy import func, select

from mailer.bounce_intake import bounces_cli
from mailer.extensions import db
from mailer.models import Bounce, Delivery, DeliveryKind, DeliveryStatus, Suppression
from mailer.verp import verp_address
from tests.factories import add_subscribers

CORPUS = Path(__file__).parent / "data" / "bounces"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_maildir_fetched_twice_counts_once(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    app.config["MAILER_BOUNCE_ADDRESS"] = "bounces@news.example.org"
    with app.app_context():
        [reader] = add_subscribers(1, now=NOW)
        delivery = Delivery(
            kind=DeliveryKind.DIGEST, subscriber_id=reader, status=DeliveryStatus.SENT,
            message_id="<m1@news.example.org>", next_attempt_at=NOW, created_at=NOW,
        )  # fmt: skip
        db.session.add(delivery)
        db.session.commit()
        verp = verp_address(delivery.id)
    raw = (CORPUS / "postfix_user_unknown.eml").read_text()
    raw = raw.format(verp=verp, message_id="<m1@news.example.org>").encode()
    box = mailbox.Maildir(tmp_path / "bounces", create=True)
    key = box.add(raw)
    box.add(b"From: someone@example.org\r\nSubject: hello\r\n\r\nnot a bounce\r\n")
    url = f"maildir://{tmp_path / 'bounces'}"

    first = runner.invoke(bounces_cli, ["fetch", "--mailbox", url])
    assert first.exit_code == 0, first.output
    assert "2 new reports, 1 bounces recorded" in first.output
    # Read again, and the same message put back unseen (a crash before it was flagged).
    shutil.copy(next((tmp_path / "bounces" / "cur").glob(f"{key}*")), tmp_path / "bounces" / "new")
    again = runner.invoke(bounces_cli, ["fetch", "--mailbox", url])
    assert again.exit_code == 0, again.output
    assert "0 new reports, 0 bounces recorded" in again.output
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Bounce)) == 1
        assert db.session.scalars(select(Suppression.reason)).all() == ["hard_bounce"]


def test_a_bad_mailbox_is_one_clear_line(runner: FlaskCliRunner, tmp_path: Path) -> None:
    result = runner.invoke(bounces_cli, ["fetch", "--mailbox", f"maildir://{tmp_path}"])
    assert result.exit_code != 0
    assert "is not a Maildir" in str(result.exception)
