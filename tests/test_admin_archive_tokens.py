"""The public digest archive, the admin API tokens page and early-access opens on the films list."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from mailer.api.tokens import authenticate
from mailer.digests import create_digest
from mailer.extensions import db
from mailer.models import ApiToken, DigestStatus, EarlyAccessOpen, Film, Subscriber
from tests.conftest import admin_csrf

NOW = datetime.now(UTC)
HOSTILE_MARKDOWN = (
    "<script>alert(1)</script>\n\n[click](javascript:alert(1))\n\n"
    '<img src=x onerror="alert(2)">\n\n{{ config }} {% debug %}'
)


def _films(app: Flask) -> tuple[int, int]:
    """A public film and one in early access (released next month); their ids."""
    with app.app_context():
        public = Film(slug="public", title="Out now", watch_url="https://watch.example.org/1")
        early = Film(
            slug="early",
            title="Secret island",
            release_date=(NOW + timedelta(days=30)).date(),
            early_access_at=NOW - timedelta(days=1),
            watch_url="https://watch.example.org/secret",
        )
        db.session.add_all([public, early])
        db.session.commit()
        return public.id, early.id


def _digest(app: Flask, subject: str, status: str, films: list[int], intro: str = "Hi") -> int:
    with app.app_context():
        digest = create_digest(subject, "", intro, [(f, "") for f in films], NOW)
        digest.status = status
        if status == DigestStatus.SENT:
            digest.started_at = digest.finished_at = NOW - timedelta(days=len(subject))
        db.session.commit()
        return digest.id


def test_archive_lists_sent_digests_newest_first(app: Flask, client: FlaskClient) -> None:
    public, _ = _films(app)
    older = _digest(app, "Older digest", DigestStatus.SENT, [public])
    newer = _digest(app, "New", DigestStatus.SENT, [public])
    draft = _digest(app, "Draft digest", DigestStatus.DRAFT, [public])
    sending = _digest(app, "Sending digest", DigestStatus.SENDING, [public])
    page = client.get("/digests").get_data(as_text=True)
    assert page.index(f"/digests/{newer}") < page.index(f"/digests/{older}")
    assert "Draft digest" not in page and "Sending digest" not in page
    for hidden in (draft, sending, 999999):
        assert client.get(f"/digests/{hidden}").status_code == 404
    home = client.get("/").get_data(as_text=True)
    assert 'href="/digests"' in home  # linked from the site navigation
    assert client.get("/digests").headers["Content-Security-Policy"].count("script-src 'self'")


def test_archive_shows_nothing_personal_and_gated_films_as_coming_soon(
    app: Flask, client: FlaskClient
) -> None:
    public, early = _films(app)
    with app.app_context():
        db.session.add(Subscriber(email="reader@example.org", status="confirmed", nonce="x"))
        db.session.commit()
    digest_id = _digest(app, "Both films", DigestStatus.SENT, [public, early])
    page = client.get(f"/digests/{digest_id}").get_data(as_text=True)
    assert "Out now" in page and "https://watch.example.org/1" in page
    assert "Secret island" in page and "Coming soon." in page
    assert "watch.example.org/secret" not in page
    assert "/early/" not in page and "/unsubscribe/" not in page and "/preferences/" not in page
    assert "reader@example.org" not in page


def test_archive_keeps_hostile_content_inert(app: Flask, client: FlaskClient) -> None:
    public, _ = _films(app)
    with app.app_context():
        film = db.session.get(Film, public)
        assert film is not None
        film.title = '<img src=x onerror="alert(5)">'
        db.session.commit()
    digest_id = _digest(
        app, "<script>alert('s')</script> {{ config }}", DigestStatus.SENT, [public],
        intro=HOSTILE_MARKDOWN,
    )  # fmt: skip
    page = client.get(f"/digests/{digest_id}").get_data(as_text=True)
    assert "<script>alert" not in page
    assert "javascript:" not in page
    assert "<img src=x onerror" not in page and '<img src="x" onerror' not in page
    assert "{{ config }}" in page and "SECRET_KEY" not in page
    listing = client.get("/digests").get_data(as_text=True)
    assert "<script>alert" not in listing and "&lt;script&gt;" in listing


def test_api_tokens_create_shows_once_then_revoke(app: Flask, admin_client: FlaskClient) -> None:
    page = admin_client.get("/admin/api-tokens").get_data(as_text=True)
    assert "No tokens yet." in page
    created = admin_client.post(
        "/admin/api-tokens", data={"csrf_token": admin_csrf(admin_client), "name": "site build"}
    )
    assert created.status_code == 201
    html = created.get_data(as_text=True)
    plaintext = re.search(r'<code id="new-token">([^<]+)</code>', html)
    assert plaintext is not None
    with app.app_context():
        token = db.session.scalar(select(ApiToken))
        assert token is not None and token.token_hash != plaintext.group(1)
        token_id = token.id
        authenticate(f"Bearer {plaintext.group(1)}", NOW)
        db.session.commit()
    listing = admin_client.get("/admin/api-tokens").get_data(as_text=True)
    assert plaintext.group(1) not in listing  # shown once only
    assert "site build" in listing and "never" not in listing  # last used is shown
    revoked = admin_client.post(
        f"/admin/api-tokens/{token_id}/revoke", data={"csrf_token": admin_csrf(admin_client)}
    )
    assert revoked.status_code == 302
    with app.app_context():
        token = db.session.get(ApiToken, token_id)
        assert token is not None and token.revoked_at is not None
    assert "revoked" in admin_client.get("/admin/api-tokens").get_data(as_text=True)
    missing = admin_client.post(
        "/admin/api-tokens/999999/revoke", data={"csrf_token": admin_csrf(admin_client)}
    )
    assert missing.status_code == 404


def test_api_token_names_are_checked_beside_the_field(
    app: Flask, admin_client: FlaskClient
) -> None:
    for name in ("", "x" * 101, "tab\there"):
        response = admin_client.post(
            "/admin/api-tokens", data={"csrf_token": admin_csrf(admin_client), "name": name}
        )
        assert response.status_code == 400, name
        assert 'id="e-name"' in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(ApiToken)) is None


def test_films_list_shows_early_access_opens(app: Flask, admin_client: FlaskClient) -> None:
    _, early = _films(app)
    with app.app_context():
        db.session.add_all(
            EarlyAccessOpen(film_id=early, opener_hash=f"h{n}", at=NOW) for n in range(3)
        )
        db.session.commit()
    page = admin_client.get("/admin/films").get_data(as_text=True)
    assert "Early-access opens" in page
    row = page[page.index("Secret island") :]
    assert re.search(r"<td>3</td>", row[: row.index("</tr>")])
    other = page[page.index("Out now") :]
    assert re.search(r"<td>0</td>", other[: other.index("</tr>")])
