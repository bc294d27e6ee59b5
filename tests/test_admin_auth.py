"""Admin accounts: the create-admin command, sign-in, sessions, CSRF, and that /admin is closed."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from mailer import create_app
from mailer.extensions import db
from mailer.models import Admin
from tests.conftest import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    admin_csrf,
    csrf_token_from,
    make_admin,
    sign_in,
)


def _admin(app: Flask) -> Admin:
    with app.app_context():
        admin = db.session.scalar(select(Admin))
        assert admin is not None
        db.session.expunge(admin)
        return admin


def test_create_admin_with_password_from_environment(app, runner, monkeypatch) -> None:
    monkeypatch.setenv("MAILER_ADMIN_PASSWORD", "a long enough password")
    result = runner.invoke(args=["create-admin", "Boss@Example.org", "--timezone", "Europe/Paris"])
    assert result.exit_code == 0, result.output
    admin = _admin(app)
    assert admin.email == "boss@example.org"
    assert admin.timezone == "Europe/Paris"
    assert admin.password_hash.startswith("$argon2id$")
    assert "a long enough password" not in admin.password_hash


def test_create_admin_prompts_twice_for_the_password(app, runner, monkeypatch) -> None:
    monkeypatch.delenv("MAILER_ADMIN_PASSWORD", raising=False)
    result = runner.invoke(
        args=["create-admin", "boss@example.org"],
        input="a long enough password\na long enough password\n",
    )
    assert result.exit_code == 0, result.output
    assert "Repeat for confirmation" in result.output
    client = app.test_client()
    assert sign_in(client, "boss@example.org", "a long enough password").status_code == 302


def test_create_admin_refuses_short_password_duplicate_and_bad_address(app, runner) -> None:
    short = runner.invoke(args=["create-admin", "a@example.org", "--password", "short"])
    assert short.exit_code != 0 and "at least 12 characters" in short.output
    bad = runner.invoke(args=["create-admin", "not-an-address", "--password", "x" * 20])
    assert bad.exit_code != 0 and "email" in bad.output
    zone = runner.invoke(
        args=["create-admin", "a@example.org", "--password", "x" * 20, "--timezone", "Mars/Base"]
    )
    assert zone.exit_code != 0 and "time zone" in zone.output
    assert (
        runner.invoke(args=["create-admin", "a@example.org", "--password", "x" * 20]).exit_code == 0
    )
    again = runner.invoke(args=["create-admin", "A@example.org", "--password", "y" * 20])
    assert again.exit_code != 0 and "already exists" in again.output
    with app.app_context():
        assert db.session.scalars(select(Admin.email)).all() == ["a@example.org"]


def test_set_admin_password_command_changes_it_and_ends_sessions(app, admin_client, runner) -> None:
    assert admin_client.get("/admin/").status_code == 200
    result = runner.invoke(
        args=["set-admin-password", ADMIN_EMAIL, "--password", "a brand new password"]
    )
    assert result.exit_code == 0, result.output
    assert admin_client.get("/admin/").status_code == 302
    fresh = app.test_client()
    assert sign_in(fresh, ADMIN_EMAIL, ADMIN_PASSWORD).status_code == 401
    assert sign_in(fresh, ADMIN_EMAIL, "a brand new password").status_code == 302
    unknown = runner.invoke(
        args=["set-admin-password", "nobody@example.org", "--password", "x" * 20]
    )
    assert unknown.exit_code != 0 and "no admin" in unknown.output


def test_sign_in_gives_one_message_for_unknown_address_and_wrong_password(app, client) -> None:
    make_admin(app)
    wrong_password = sign_in(client, ADMIN_EMAIL, "not the password at all")
    unknown = sign_in(client, "nobody@example.org", ADMIN_PASSWORD)
    assert wrong_password.status_code == unknown.status_code == 401

    def message(response) -> str:
        return re.search(r'role="alert">([^<]*)<', response.get_data(as_text=True)).group(1)

    assert message(wrong_password) == message(unknown)
    assert client.get("/admin/").status_code == 302


def test_sign_in_then_sign_out(app, client) -> None:
    make_admin(app)
    response = sign_in(client)
    assert response.status_code == 302 and response.headers["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    token = admin_csrf(client)
    out = client.post("/admin/sign-out", data={"csrf_token": token})
    assert out.status_code == 302
    assert client.get("/admin/").status_code == 302
    assert _admin(app).last_login_at is not None


def test_signed_out_session_cookie_cannot_be_replayed(app, admin_client) -> None:
    cookie = admin_client.get_cookie("session")
    assert cookie is not None
    admin_client.post("/admin/sign-out", data={"csrf_token": admin_csrf(admin_client)})
    thief = app.test_client()
    thief.set_cookie("session", cookie.value, domain=cookie.domain)
    assert thief.get("/admin/").status_code == 302


def test_password_change_ends_other_sessions_but_keeps_this_one(app, admin_client) -> None:
    other = app.test_client()
    assert sign_in(other).status_code == 302
    data = {
        "csrf_token": admin_csrf(admin_client),
        "current_password": ADMIN_PASSWORD,
        "new_password": "another long password",
        "confirm_password": "another long password",
    }
    assert admin_client.post("/admin/account", data=data).status_code == 302
    assert admin_client.get("/admin/").status_code == 200
    assert other.get("/admin/").status_code == 302
    assert sign_in(app.test_client(), ADMIN_EMAIL, "another long password").status_code == 302


@pytest.mark.parametrize(
    ("current", "new", "confirm", "error"),
    [
        ("wrong password here", "another long password", "another long password", "not your"),
        (ADMIN_PASSWORD, "another long password", "different long password", "does not match"),
        (ADMIN_PASSWORD, "short", "short", "at least 12"),
    ],
)
def test_password_change_refused(app, admin_client, current, new, confirm, error) -> None:
    data = {
        "csrf_token": admin_csrf(admin_client),
        "current_password": current,
        "new_password": new,
        "confirm_password": confirm,
    }
    response = admin_client.post("/admin/account", data=data)
    assert response.status_code == 400
    assert error in response.get_data(as_text=True)
    assert sign_in(app.test_client()).status_code == 302


def test_sign_in_is_rate_limited(app, client) -> None:
    make_admin(app)
    statuses = [sign_in(client, ADMIN_EMAIL, "wrong password guess").status_code for _ in range(6)]
    assert statuses[:5] == [401] * 5
    assert statuses[5] == 429
    # The right password is refused too while the limit holds.
    assert sign_in(client).status_code == 429


def test_next_goes_back_to_the_admin_page_but_never_off_site(app, client) -> None:
    make_admin(app)
    first = client.get("/admin/films?x=1")
    assert first.status_code == 302
    assert "/admin/sign-in?next=" in first.headers["Location"]
    token = csrf_token_from(client.get("/admin/sign-in").get_data(as_text=True))
    form = {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "csrf_token": token}
    good = client.post("/admin/sign-in?next=/admin/films", data=form)
    assert good.headers["Location"] == "/admin/films"
    client.post("/admin/sign-out", data={"csrf_token": admin_csrf(client)})
    token = csrf_token_from(client.get("/admin/sign-in").get_data(as_text=True))
    form["csrf_token"] = token
    evil = client.post("/admin/sign-in?next=//evil.example/admin", data=form)
    assert evil.headers["Location"] == "/admin/"


def test_session_cookie_flags(app, client) -> None:
    make_admin(app)
    response = sign_in(client)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # served over http in tests


def test_session_cookie_is_secure_over_https(app, monkeypatch) -> None:
    # `app` empties the database afterwards; this test builds its own https app.
    monkeypatch.setenv("MAILER_BASE_URL", "https://news.example.org")
    app = create_app({"TESTING": True})
    make_admin(app)
    client = app.test_client()
    token = csrf_token_from(
        client.get("/admin/sign-in", base_url="https://news.example.org").get_data(as_text=True)
    )
    response = client.post(
        "/admin/sign-in",
        data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "csrf_token": token},
        base_url="https://news.example.org",
        headers={"Referer": "https://news.example.org/admin/sign-in"},
    )
    assert response.status_code == 302
    assert "Secure" in response.headers["Set-Cookie"]
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def _admin_urls(app: Flask) -> list[tuple[str, str]]:
    """Every /admin rule with each of its methods, ids filled with 1."""
    urls = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/admin"):
            continue
        path = re.sub(r"<(?:int:)?[^>]+>", "1", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            urls.append((method, path))
    return urls


def test_every_admin_route_refuses_anonymous_users(app: Flask, client: FlaskClient) -> None:
    urls = _admin_urls(app)
    assert len(urls) > 15
    app.config["WTF_CSRF_ENABLED"] = False  # reach the guard, not just the CSRF check
    for method, path in urls:
        if path == "/admin/sign-in":
            continue
        response = client.open(path, method=method)
        assert response.status_code == 302, (method, path)
        assert response.headers["Location"].startswith("/admin/sign-in"), (method, path)


def test_every_admin_post_refuses_a_missing_csrf_token(app: Flask, admin_client) -> None:
    posts = [path for method, path in _admin_urls(app) if method == "POST"]
    assert "/admin/sign-out" in posts
    for path in posts:
        response = admin_client.post(path, data={"email": "x@example.org"})
        assert response.status_code == 400, path
        assert "could not be understood" in response.get_data(as_text=True)
    # Nothing above signed us out.
    assert admin_client.get("/admin/").status_code == 200


def test_sign_in_form_refuses_a_missing_csrf_token(app, client) -> None:
    make_admin(app)
    response = client.post(
        "/admin/sign-in", data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    )
    assert response.status_code == 400
    assert client.get("/admin/").status_code == 302


def test_admin_pages_are_not_cached_and_carry_security_headers(admin_client) -> None:
    for path in ("/admin/", "/admin/sign-in", "/admin/films", "/admin/account"):
        response = admin_client.get(path, follow_redirects=True)
        assert response.headers["Cache-Control"] == "no-store"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert "unsafe-inline" not in response.headers["Content-Security-Policy"]
        assert response.headers["Referrer-Policy"] == "same-origin"
        html = response.get_data(as_text=True)
        assert "<script" not in html and "style=" not in html and "<style" not in html


def test_production_hashes_use_the_strong_argon2id_profile(test_env) -> None:
    app = create_app()  # not TESTING: the hasher the service really uses
    with app.test_request_context():
        from mailer.admin.auth import hash_password

        assert "$argon2id$v=19$m=65536,t=3,p=4$" in hash_password("a long enough password")


def test_admin_changes_time_zone(app, admin_client) -> None:
    page = admin_client.get("/admin/account").get_data(as_text=True)
    assert "<option selected>UTC</option>" in page
    data = {"csrf_token": admin_csrf(admin_client), "timezone": "America/New_York"}
    assert admin_client.post("/admin/account/timezone", data=data).status_code == 302
    assert _admin(app).timezone == "America/New_York"
    data["timezone"] = "<script>Nowhere"
    bad = admin_client.post("/admin/account/timezone", data=data)
    assert bad.status_code == 400
    assert "is not a known time zone" in bad.get_data(as_text=True)
    assert "<script>Nowhere" not in bad.get_data(as_text=True)
    assert _admin(app).timezone == "America/New_York"
