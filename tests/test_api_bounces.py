"""GET /api/v1/bounces: bounces and complaints, newest first, cursor paged, filtered."""

from datetime import UTC, datetime, timedelta

from flask import Flask
from flask.testing import FlaskClient

from mailer.api_tokens import create_api_token
from mailer.bounces import BounceKind, record_bounce
from mailer.extensions import db
from mailer.models import utcnow
from tests.factories import assert_error

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_bounces_are_listed_newest_first_a_page_at_a_time(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        _, plaintext = create_api_token("tests", NOW)
        for i, kind in enumerate([BounceKind.HARD, BounceKind.SOFT, BounceKind.COMPLAINT]):
            record_bounce(
                address=f"r{i}@example.org",
                kind=kind,
                diagnostic=f"reason {i}",
                when=NOW + timedelta(minutes=i),
                source="dsn",
                status="5.1.1" if kind == BounceKind.HARD else "",
            )
        db.session.commit()
    auth = {"Authorization": f"Bearer {plaintext}"}
    first = client.get("/api/v1/bounces?limit=2", headers=auth).get_json()
    assert [b["address"] for b in first["items"]] == ["r2@example.org", "r1@example.org"]
    rest = client.get(f"/api/v1/bounces?limit=2&cursor={first['next_cursor']}", headers=auth)
    [last] = rest.get_json()["items"]
    assert (last["kind"], last["status"], last["diagnostic"]) == ("hard", "5.1.1", "reason 0")
    only = client.get("/api/v1/bounces?kind=complaint", headers=auth).get_json()["items"]
    assert [b["kind"] for b in only] == ["complaint"]
    assert_error(client.get("/api/v1/bounces?kind=nope", headers=auth), 422, "validation_error")
    assert client.get("/api/v1/bounces").status_code == 401
    spec = client.get("/api/v1/openapi.json").get_json()
    assert "/api/v1/bounces" in spec["paths"]


def test_a_digest_id_beyond_the_database_range_is_a_422(client: FlaskClient, app: Flask) -> None:
    """Found by Schemathesis on PostgreSQL: the id reached the query and was a 500."""
    with app.app_context():
        _, token = create_api_token("cms", utcnow())
        db.session.commit()
    answer = client.get(
        "/api/v1/bounces?digest_id=5580074866", headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 422, answer.get_data(as_text=True)
    assert "digest_id" in answer.get_json()["errors"]
