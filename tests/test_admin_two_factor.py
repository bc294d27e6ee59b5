"""Two-factor sign-in: set up with a real TOTP code, sign in with one, recovery codes, required."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from mailer import create_app
from mailer.extensions import db
from mailer.models import Admin, AdminRecoveryCode
from tests.conftest import ADMIN_EMAIL, csrf_token_from, make_admin, sign_in

# The instant the server's clock stops at; the clock fixture sets it for each test.
NOW = datetime(2026, 12, 10, 9, 0, 10, tzinfo=UTC)


@pytest.fixture
def clock() -> Iterator[time_machine.Coordinates]:
    """The server's clock, stopped at NOW: codes are computed for the same instant.

    NOW is 10 seconds into a TOTP window a little ahead of the clock as it stands (moved or
    not): a session signed in a moment ago must not look signed in the future.
    """
    global NOW
    ahead = datetime.now(UTC) + timedelta(seconds=30)
    NOW = ahead.replace(second=10 if ahead.second < 30 else 40, microsecond=0)
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def code_at(secret: str, when: datetime) -> str:
    return pyotp.TOTP(secret).at(when)


def stored_secret(app: Flask) -> str | None:
    with app.app_context():
        return db.session.scalar(select(Admin.totp_secret))


def set_up(client: FlaskClient, when: datetime | None = None) -> tuple[str, list[str]]:
    """Turn two-factor sign-in on from the account pages; return the secret and recovery codes."""
    when = when or NOW
    page = client.get("/admin/account/two-factor").get_data(as_text=True)
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page).group(1)
    uri = re.search(r'id="totp-uri">([^<]+)<', page).group(1)
    assert uri.startswith("otpauth://totp/") and f"secret={secret}" in uri
    assert "<svg" in page  # the QR code, drawn on the server
    done = client.post(
        "/admin/account/two-factor",
        data={"csrf_token": csrf_token_from(page), "code": code_at(secret, when)},
    )
    assert done.status_code == 200, done.get_data(as_text=True)
    codes = re.search(r'id="recovery-codes">([^<]+)<', done.get_data(as_text=True)).group(1)
    return secret, codes.split()


def second_step(client: FlaskClient, code: str):
    page = client.get("/admin/sign-in/code")
    assert page.status_code == 200
    token = csrf_token_from(page.get_data(as_text=True))
    return client.post("/admin/sign-in/code", data={"csrf_token": token, "code": code})


def test_set_up_then_sign_in_with_a_code(app: Flask, admin_client: FlaskClient, clock) -> None:
    wrong = admin_client.get("/admin/account/two-factor").get_data(as_text=True)
    refused = admin_client.post(
        "/admin/account/two-factor", data={"csrf_token": csrf_token_from(wrong), "code": "000000"}
    )
    assert refused.status_code == 400 and stored_secret(app) is None
    secret, codes = set_up(admin_client)
    assert stored_secret(app) == secret and len(codes) == 10 == len(set(codes))
    with app.app_context():
        hashes = db.session.scalars(select(AdminRecoveryCode.code_hash)).all()
    assert len(hashes) == 10 and all(h.startswith("$argon2id$") for h in hashes)
    assert not any(code.replace("-", "") in h for code in codes for h in hashes)

    clock.shift(timedelta(seconds=60))
    browser = app.test_client()
    password = sign_in(browser)
    assert password.headers["Location"] == "/admin/sign-in/code"
    assert browser.get("/admin/").status_code == 302  # not signed in after the password alone
    assert second_step(browser, "123456").status_code == 401
    ok = second_step(browser, code_at(secret, NOW + timedelta(seconds=60)))
    assert ok.status_code == 302 and ok.headers["Location"] == "/admin/"
    assert browser.get("/admin/").status_code == 200


def test_a_code_is_good_once_within_its_window(app: Flask, admin_client, clock) -> None:
    secret, _codes = set_up(admin_client)
    clock.shift(timedelta(seconds=30))
    code = code_at(secret, NOW + timedelta(seconds=30))
    first, second = app.test_client(), app.test_client()
    sign_in(first)
    assert second_step(first, code).status_code == 302
    clock.shift(timedelta(seconds=5))  # same 30-second window
    sign_in(second)
    assert second_step(second, code).status_code == 401
    # The code of the set-up step cannot sign in either, nor any older one.
    assert second_step(second, code_at(secret, NOW)).status_code == 401


def test_a_recovery_code_works_once(app: Flask, admin_client, clock) -> None:
    _secret, codes = set_up(admin_client)
    first, second = app.test_client(), app.test_client()
    sign_in(first)
    assert second_step(first, codes[3].upper()).status_code == 302
    sign_in(second)
    assert second_step(second, codes[3]).status_code == 401
    assert second_step(second, codes[4]).status_code == 302
    with app.app_context():
        used = db.session.scalars(
            select(AdminRecoveryCode).where(AdminRecoveryCode.used_at.is_not(None))
        ).all()
    assert len(used) == 2 and all(u.used_at == NOW for u in used)


def test_the_second_step_expires_and_needs_the_password_step(app: Flask, clock) -> None:
    make_admin(app)
    client = app.test_client()
    assert client.get("/admin/sign-in/code").headers["Location"] == "/admin/sign-in"
    sign_in(client)
    assert client.get("/admin/").status_code == 200  # no two-factor: signed in at once
    with app.app_context():
        admin = db.session.scalar(select(Admin))
        admin.totp_secret = pyotp.random_base32()
        db.session.commit()
        secret = admin.totp_secret
    later = app.test_client()
    sign_in(later)
    clock.shift(timedelta(minutes=6))
    page = later.get("/admin/sign-in/code")
    assert page.status_code == 302 and page.headers["Location"] == "/admin/sign-in"
    token = csrf_token_from(later.get("/admin/sign-in").get_data(as_text=True))
    code = code_at(secret, NOW + timedelta(minutes=6))
    late = later.post("/admin/sign-in/code", data={"csrf_token": token, "code": code})
    assert late.status_code == 302 and later.get("/admin/").status_code == 302


def test_the_second_step_is_rate_limited(app: Flask, admin_client, clock) -> None:
    set_up(admin_client)
    client = app.test_client()
    sign_in(client)
    token = csrf_token_from(client.get("/admin/sign-in/code").get_data(as_text=True))
    statuses = [
        client.post("/admin/sign-in/code", data={"csrf_token": token, "code": "000000"}).status_code
        for _ in range(6)
    ]
    assert statuses == [401] * 5 + [429]


def test_turning_it_off_needs_a_code(app: Flask, admin_client, clock) -> None:
    secret, _codes = set_up(admin_client)
    page = admin_client.get("/admin/account/two-factor").get_data(as_text=True)
    assert "Recovery codes left: 10" in page
    token = csrf_token_from(page)
    off = "/admin/account/two-factor/disable"
    assert admin_client.post(off, data={"csrf_token": token, "code": "nope"}).status_code == 400
    assert stored_secret(app) == secret
    clock.shift(timedelta(seconds=30))
    code = code_at(secret, NOW + timedelta(seconds=30))
    assert admin_client.post(off, data={"csrf_token": token, "code": code}).status_code == 302
    assert stored_secret(app) is None
    with app.app_context():
        assert db.session.scalars(select(AdminRecoveryCode)).all() == []


@pytest.fixture
def required_app(
    test_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, app: Flask
) -> Iterator[Flask]:
    """The app with MAILER_ADMIN_2FA=required (on the same database, emptied after by `app`)."""
    monkeypatch.setenv("MAILER_ADMIN_2FA", "required")
    required = create_app({"TESTING": True})
    yield required
    with required.app_context():
        db.session.remove()
        db.engine.dispose()


def test_required_sends_an_owner_to_set_up_before_anything_else(required_app: Flask, clock) -> None:
    assert required_app.config["MAILER_ADMIN_2FA"] == "required"
    make_admin(required_app)  # the first admin: an owner
    client = required_app.test_client()
    assert sign_in(client).status_code == 302
    for path in ("/admin/", "/admin/films", "/admin/account", "/admin/api-tokens"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"] == "/admin/account/two-factor"
    page = client.get("/admin/account/two-factor").get_data(as_text=True)
    assert "Owners must set up two-factor sign-in" in page
    secret, _codes = set_up(client)
    assert client.get("/admin/").status_code == 200
    # And an owner may not turn it off while it is required.
    token = csrf_token_from(client.get("/admin/account/two-factor").get_data(as_text=True))
    code = code_at(secret, NOW + timedelta(seconds=30))
    clock.shift(timedelta(seconds=30))
    refused = client.post(
        "/admin/account/two-factor/disable", data={"csrf_token": token, "code": code}
    )
    assert refused.status_code == 400 and stored_secret(required_app) == secret


def test_required_leaves_editors_free(required_app: Flask, clock) -> None:
    make_admin(required_app, "owner@example.org")
    make_admin(required_app)  # the second admin: an editor
    client = required_app.test_client()
    assert sign_in(client, ADMIN_EMAIL).status_code == 302
    assert client.get("/admin/").status_code == 200
