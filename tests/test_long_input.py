"""Over-long input to every form: a clear answer and nothing written, never a 500.

PostgreSQL enforces column lengths that SQLite ignores, so this matters most there.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from mailer.extensions import db
from mailer.models import ApiToken, Digest, EmbedForm, Film, Subscriber, Suppression
from tests.conftest import admin_csrf, csrf_token_from

LONG = "x" * 5000
LONG_ADDRESS = "a" * 300 + "@example.org"

ADMIN_FORMS = [
    ("/admin/api-tokens", {"name": LONG}),
    (
        "/admin/embed-forms",
        {
            "name": LONG, "origins": "https://" + LONG + ".org", "topics": "digest",
            "consent_text": LONG * 4,
        },
    ),
    ("/admin/suppressions", {"email": LONG_ADDRESS, "reason": LONG, "note": LONG}),
    ("/admin/account/timezone", {"timezone": LONG}),
    (
        "/admin/films/new",
        {
            "title": LONG, "slug": LONG, "director": LONG, "country": LONG, "year": "9" * 40,
            "description": LONG * 20, "watch_url": "https://" + LONG,
            "poster_url": "https://" + LONG, "release_date": LONG, "early_access_at": LONG,
        },
    ),
    ("/admin/digests/new", {"subject": LONG, "preheader": LONG, "intro_markdown": LONG * 40}),
]  # fmt: skip


def _counts() -> tuple[int, ...]:
    return tuple(
        db.session.scalar(select(func.count()).select_from(model))
        for model in (ApiToken, EmbedForm, Suppression, Film, Digest, Subscriber)
    )


@pytest.mark.parametrize(("path", "fields"), ADMIN_FORMS, ids=[p for p, _ in ADMIN_FORMS])
def test_admin_forms_refuse_over_long_input(app, admin_client, path: str, fields: dict) -> None:
    with app.app_context():
        before = _counts()
    response = admin_client.post(path, data={**fields, "csrf_token": admin_csrf(admin_client)})
    assert response.status_code == 400  # the form again, saying what is wrong
    assert "Traceback" not in response.get_data(as_text=True)
    with app.app_context():
        assert _counts() == before


def test_subscribe_refuses_an_over_long_address(app, client) -> None:
    page = client.get("/").get_data(as_text=True)
    response = client.post(
        "/subscribe",
        data={"email": LONG_ADDRESS, "topics": ["digest"], "csrf_token": csrf_token_from(page)},
    )
    assert response.status_code == 400
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Subscriber)) == 0
