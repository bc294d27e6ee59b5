"""Real-world bounce and complaint samples parse to the expected bounce (or to none)."""

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask import Flask

from mailer.bounce_intake import parse_report
from mailer.extensions import db
from mailer.models import Delivery, DeliveryKind, DeliveryStatus
from mailer.verp import verp_address

CORPUS = Path(__file__).parent / "data" / "bounces"
EXPECTED = json.loads((CORPUS / "expected.json").read_text())
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
MESSAGE_ID = "<176407200000.1.d1@news.example.org>"


def test_every_sample_has_an_expected_result() -> None:
    assert set(EXPECTED) == {path.name for path in CORPUS.glob("*.eml")}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_parses_as_expected(app: Flask, name: str) -> None:
    app.config["MAILER_BOUNCE_ADDRESS"] = "bounces@news.example.org"
    with app.app_context():
        delivery = Delivery(
            kind=DeliveryKind.DIGEST,
            status=DeliveryStatus.SENT,
            message_id=MESSAGE_ID,
            next_attempt_at=NOW,
            created_at=NOW,
        )
        db.session.add(delivery)
        db.session.commit()
        verp = verp_address(delivery.id)
        assert verp is not None
        forged = verp.replace(verp.partition("-")[2][:4], "0000")
        raw = (
            (CORPUS / name).read_text().format(verp=verp, forged_verp=forged, message_id=MESSAGE_ID)
        )
        findings = parse_report(raw.replace("\n", "\r\n").encode())
    expected = EXPECTED[name]
    if expected is None:
        assert findings == []
        return
    [finding] = findings
    assert finding.delivery_id == delivery.id
    assert (finding.kind, finding.status, finding.source) == (
        expected["kind"],
        expected["status"],
        expected["source"],
    )
    assert expected["diagnostic"] in finding.diagnostic
