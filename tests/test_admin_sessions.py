"""Signing out ends this session only; "Sign out everywhere" and a password change end them all."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from mailer.extensions import db
from mailer.models import AdminSession
from tests.conftest import ADMIN_PASSWORD, admin_csrf, make_admin, sign_in


def two_browsers(app: Flask) -> tuple[FlaskClient, FlaskClient]:
    """Two clients signed in to the same account."""
    make_admin(app)
    laptop, phone = app.test_client(), app.test_client()
    assert sign_in(laptop).status_code == 302
    assert sign_in(phone).status_code == 302
    assert laptop.get("/admin/").status_code == phone.get("/admin/").status_code == 200
    return laptop, phone


def live_sessions(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(AdminSession)) or 0


def test_sign_out_ends_only_this_session(app: Flask) -> None:
    laptop, phone = two_browsers(app)
    assert live_sessions(app) == 2
    out = laptop.post("/admin/sign-out", data={"csrf_token": admin_csrf(laptop)})
    assert out.status_code == 302
    assert laptop.get("/admin/").status_code == 302
    assert phone.get("/admin/").status_code == 200
    assert live_sessions(app) == 1


def test_sign_out_everywhere_ends_every_session(app: Flask) -> None:
    laptop, phone = two_browsers(app)
    out = laptop.post("/admin/sign-out-everywhere", data={"csrf_token": admin_csrf(laptop)})
    assert out.status_code == 302
    assert laptop.get("/admin/").status_code == 302
    assert phone.get("/admin/").status_code == 302
    assert live_sessions(app) == 0


def test_password_change_keeps_this_session_and_ends_the_others(app: Flask) -> None:
    laptop, phone = two_browsers(app)
    changed = laptop.post(
        "/admin/account",
        data={
            "csrf_token": admin_csrf(laptop),
            "current_password": ADMIN_PASSWORD,
            "new_password": "an entirely new password",
            "confirm_password": "an entirely new password",
        },
    )
    assert changed.status_code == 302
    assert laptop.get("/admin/").status_code == 200
    assert phone.get("/admin/").status_code == 302
    assert live_sessions(app) == 1


def test_account_page_offers_sign_out_everywhere(admin_client: FlaskClient) -> None:
    page = admin_client.get("/admin/account").get_data(as_text=True)
    assert 'action="/admin/sign-out-everywhere"' in page and "Sign out everywhere" in page
