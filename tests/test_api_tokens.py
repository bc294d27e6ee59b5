"""API tokens: created once and stored hashed, listed, revoked; bearer authentication."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from mailer.api.tokens import InvalidApiToken, authenticate
from mailer.api_tokens import ApiTokenNameInvalid, create_api_token, revoke_api_token
from mailer.extensions import db
from mailer.models import ApiToken

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_create_stores_only_a_hash_and_a_short_prefix(app) -> None:
    with app.app_context():
        _, plaintext = create_api_token("  cms  ", NOW)
        db.session.commit()
        stored = db.session.scalars(select(ApiToken)).one()
        assert stored.name == "cms"
        assert stored.token_hash == hashlib.sha256(plaintext.encode()).hexdigest()
        assert plaintext.startswith(stored.prefix) and len(stored.prefix) == 12
        assert len(plaintext) > 40
        assert plaintext not in {stored.name, stored.token_hash, stored.prefix}
        assert stored.created_at == NOW and stored.last_used_at is None


@pytest.mark.parametrize("name", ["", "   ", "x" * 101, "bad\nname"])
def test_create_refuses_bad_names(app, name: str) -> None:
    with app.app_context(), pytest.raises(ApiTokenNameInvalid):
        create_api_token(name, NOW)


def test_authenticate_accepts_the_token_and_records_use_once_a_minute(app) -> None:
    with app.app_context():
        token, plaintext = create_api_token("cms", NOW)
        db.session.commit()
        assert authenticate(f"Bearer {plaintext}", NOW).id == token.id
        assert authenticate(f"bearer   {plaintext} ", NOW + timedelta(seconds=59)).id == token.id
        db.session.commit()
        db.session.expire_all()
        assert db.session.get(ApiToken, token.id).last_used_at == NOW
        authenticate(f"Bearer {plaintext}", NOW + timedelta(seconds=61))
        db.session.commit()
        db.session.expire_all()
        assert db.session.get(ApiToken, token.id).last_used_at == NOW + timedelta(seconds=61)


@pytest.mark.parametrize(
    ("header", "presented"),
    [
        (None, False),
        ("", False),
        ("Basic dXNlcjpwYXNz", False),
        ("Bearer", False),
        ("Bearer ", False),
        ("Bearer mlr_not-a-real-token", True),
    ],
)
def test_authenticate_refuses_missing_malformed_and_wrong(
    app, header: str | None, presented: bool
) -> None:
    with app.app_context():
        create_api_token("cms", NOW)
        with pytest.raises(InvalidApiToken) as caught:
            authenticate(header, NOW)
        assert caught.value.presented is presented


def test_revoked_token_no_longer_authenticates(app) -> None:
    with app.app_context():
        token, plaintext = create_api_token("cms", NOW)
        revoke_api_token(token, NOW + timedelta(hours=1))
        revoke_api_token(token, NOW + timedelta(hours=2))
        db.session.commit()
        assert token.revoked_at == NOW + timedelta(hours=1)
        with pytest.raises(InvalidApiToken, match="revoked"):
            authenticate(f"Bearer {plaintext}", NOW)


def test_cli_create_list_revoke(app, runner) -> None:
    created = runner.invoke(args=["api-token", "create", "site CMS"])
    assert created.exit_code == 0, created.output
    plaintext = created.stdout.strip()
    assert plaintext.startswith("mlr_")
    assert "cannot be shown again" in created.stderr
    with app.app_context():
        token = db.session.scalars(select(ApiToken)).one()
        assert token.token_hash == hashlib.sha256(plaintext.encode()).hexdigest()
        token_id = token.id

    listed = runner.invoke(args=["api-token", "list"])
    assert listed.exit_code == 0
    header, row = listed.output.splitlines()
    assert header.split() == ["id", "name", "scope", "prefix", "created", "last", "used", "revoked"]
    assert (
        row.startswith(f"{token_id} ")
        and "site CMS" in row
        and " admin " in row
        and plaintext[:12] in row
    )
    assert plaintext not in listed.output

    revoked = runner.invoke(args=["api-token", "revoke", str(token_id)])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    assert "UTC" in runner.invoke(args=["api-token", "list"]).output.splitlines()[1]
    missing = runner.invoke(args=["api-token", "revoke", "999"])
    assert missing.exit_code != 0 and "no API token with id 999" in missing.output
    bad = runner.invoke(args=["api-token", "create", ""])
    assert bad.exit_code != 0


def test_http_authentication_errors(app, client) -> None:
    with app.app_context():
        token, plaintext = create_api_token("cms", NOW)
        revoked, revoked_plaintext = create_api_token("old", NOW)
        revoke_api_token(revoked, NOW)
        db.session.commit()
        token_id = token.id

    missing = client.get("/api/v1/films")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="mailer API"'
    assert missing.get_json() == {
        "status": 401,
        "code": "unauthorized",
        "message": "No API token: send 'Authorization: Bearer <token>'.",
    }
    for header, words in [
        (f"Token {plaintext}", "must be 'Bearer <token>'"),
        ("Bearer wrong", "not valid"),
        (f"Bearer {revoked_plaintext}", "revoked"),
    ]:
        response = client.get("/api/v1/films", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.is_json and words in response.get_json()["message"]
        assert response.headers["WWW-Authenticate"].startswith("Bearer ")
    assert "invalid_token" in response.headers["WWW-Authenticate"]

    ok = client.get("/api/v1/films", headers={"Authorization": f"Bearer {plaintext}"})
    assert ok.status_code == 200
    with app.app_context():
        assert db.session.get(ApiToken, token_id).last_used_at is not None
