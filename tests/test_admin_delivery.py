"""Admin digest preview, test sends, scheduling, the delivery dashboard and the outbox viewer."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from mailer.backends import backend_from_url
from mailer.digests import create_digest
from mailer.extensions import db
from mailer.journal import digest_counts
from mailer.models import (
    Admin,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Digest,
    DigestStatus,
    Film,
    Subscriber,
    SubscriberStatus,
)
from tests.conftest import ADMIN_EMAIL, admin_csrf

HOSTILE_MARKDOWN = (
    "<script>alert(1)</script>\n\n[click](javascript:alert(1))\n\n"
    '<img src=x onerror="alert(2)">\n\n{{ config }} {% debug %}'
)


def _digest(app: Flask, subject: str = "October's films", intro: str = "Hello **all**") -> int:
    """A draft digest featuring one public film; its id."""
    with app.app_context():
        film = Film(slug="the-island", title="The Island", description="A quiet place.")
        db.session.add(film)
        db.session.flush()
        digest = create_digest(subject, "Two new films", intro, [(film.id, "")], datetime.now(UTC))
        db.session.commit()
        return digest.id


def _subscribers(app: Flask, n: int) -> None:
    """n confirmed subscribers who want the digest."""
    with app.app_context():
        now = datetime.now(UTC)
        db.session.add_all(
            Subscriber(
                email=f"reader{i}@example.org",
                status=SubscriberStatus.CONFIRMED,
                nonce=f"n{i}",
                confirmed_at=now,
            )
            for i in range(n)
        )
        db.session.commit()


def _post(client: FlaskClient, path: str, **data: str):
    """Post a form with the session's CSRF token."""
    return client.post(path, data={"csrf_token": admin_csrf(client), **data})


def _digest_row(app: Flask, digest_id: int) -> Digest:
    """The digest as stored now."""
    with app.app_context():
        digest = db.session.get(Digest, digest_id)
        assert digest is not None
        db.session.expunge(digest)
        return digest


def test_preview_frame_and_text_part(app: Flask, admin_client: FlaskClient) -> None:
    digest_id = _digest(app)
    page = admin_client.get(f"/admin/digests/{digest_id}").get_data(as_text=True)
    frame = re.search(r'<iframe src="([^"]+)"\s+sandbox="([^"]*)"', page)
    assert frame is not None
    assert "allow-scripts" not in frame.group(2) and "allow-same-origin" not in frame.group(2)
    assert 'class="raw" tabindex="0"' in page and "The Island" in page  # the text part beside it
    html = admin_client.get(frame.group(1).replace("&amp;", "&"))
    assert html.status_code == 200
    assert html.headers["X-Frame-Options"] == "SAMEORIGIN"
    policy = html.headers["Content-Security-Policy"]
    assert "frame-ancestors 'self'" in policy and "script-src" not in policy
    assert "default-src 'none'" in policy and "sandbox" in policy
    assert html.headers["Cache-Control"] == "no-store"
    body = html.get_data(as_text=True)
    assert '<base target="_blank">' in body and "The Island" in body
    # The page around it keeps the strict site policy.
    assert (
        "frame-ancestors 'none'" in admin_client.get("/admin/").headers["Content-Security-Policy"]
    )


def test_preview_follows_saved_changes(app: Flask, admin_client: FlaskClient) -> None:
    digest_id = _digest(app)
    first = admin_client.get(f"/admin/digests/{digest_id}").get_data(as_text=True)
    with app.app_context():
        digest = db.session.get(Digest, digest_id)
        assert digest is not None
        digest.intro_markdown = "Completely new words"
        digest.updated_at = digest.updated_at + timedelta(seconds=5)
        db.session.commit()
    second = admin_client.get(f"/admin/digests/{digest_id}").get_data(as_text=True)
    src = re.compile(r'<iframe src="([^"]+)"')
    assert src.search(first).group(1) != src.search(second).group(1)  # type: ignore[union-attr]
    frame = admin_client.get(f"/admin/digests/{digest_id}/preview.html").get_data(as_text=True)
    assert "Completely new words" in frame and "Completely new words" in second


def test_hostile_content_is_inert_in_the_preview(app: Flask, admin_client: FlaskClient) -> None:
    digest_id = _digest(
        app, subject="<script>alert('s')</script> {{ config }}", intro=HOSTILE_MARKDOWN
    )
    with app.app_context():
        film = db.session.scalar(select(Film))
        assert film is not None
        film.title = '<img src=x onerror="alert(5)">'
        db.session.commit()
    page = admin_client.get(f"/admin/digests/{digest_id}").get_data(as_text=True)
    frame = admin_client.get(f"/admin/digests/{digest_id}/preview.html").get_data(as_text=True)
    for html in (page, frame):
        assert "<script>alert" not in html
        assert 'href="javascript' not in html.lower()
        assert "<img src=x onerror" not in html and '<img src="x" onerror' not in html
        assert "SECRET_KEY" not in html and "MAILER_" not in html
    assert "{{ config }}" in frame  # shown as text, never evaluated
    assert "javascript:" not in frame


def test_test_send_goes_to_any_address_and_is_not_counted(
    app: Flask, admin_client: FlaskClient, tmp_path: Path
) -> None:
    digest_id = _digest(app)
    app.extensions["mailer.backend"] = backend_from_url(f"file://{tmp_path}")
    response = _post(admin_client, f"/admin/digests/{digest_id}/test", to="Editor@Example.org")
    assert response.status_code == 302
    assert response.headers["Location"] == f"/admin/digests/{digest_id}#test-send"
    with app.app_context():
        test = db.session.scalar(select(Delivery))
        assert test is not None
        assert (test.kind, test.to_address, test.digest_id) == (
            DeliveryKind.TEST,
            "editor@example.org",
            digest_id,
        )
        assert sum(digest_counts(digest_id).values()) == 0
    page = admin_client.get(f"/admin/digests/{digest_id}").get_data(as_text=True)
    assert "editor@example.org" in page and "A test is on its way" in page
    # The draft stays a draft; the worker sends the test, and it lands in the outbox.
    result = app.test_cli_runner().invoke(args=["deliver"])
    assert result.exit_code == 0, result.output
    assert _digest_row(app, digest_id).status == DigestStatus.DRAFT
    outbox = admin_client.get("/admin/outbox").get_data(as_text=True)
    assert "[TEST] October" in outbox and "editor@example.org" in outbox


def test_test_send_to_a_bad_address_is_a_message_not_an_error(
    app: Flask, admin_client: FlaskClient
) -> None:
    digest_id = _digest(app)
    response = _post(admin_client, f"/admin/digests/{digest_id}/test", to="not an address")
    assert response.status_code == 302
    page = admin_client.get(f"/admin/digests/{digest_id}").get_data(as_text=True)
    assert "No test sent" in page
    with app.app_context():
        assert db.session.scalar(select(Delivery)) is None


def test_schedule_in_the_admins_zone_then_pause_resume_cancel(
    app: Flask, admin_client: FlaskClient
) -> None:
    digest_id = _digest(app)
    with app.app_context():
        admin = db.session.scalar(select(Admin).where(Admin.email == ADMIN_EMAIL))
        assert admin is not None
        admin.timezone = "Europe/Paris"
        db.session.commit()
    local = (datetime.now(ZoneInfo("Europe/Paris")) + timedelta(days=3)).replace(
        second=0, microsecond=0
    )
    typed = local.strftime("%Y-%m-%dT%H:%M")
    response = _post(admin_client, f"/admin/digests/{digest_id}/schedule", send_at=typed)
    assert response.status_code == 302
    assert response.headers["Location"] == f"/admin/digests/{digest_id}/delivery"
    digest = _digest_row(app, digest_id)
    assert digest.status == DigestStatus.SCHEDULED
    assert digest.send_at == local.astimezone(UTC)
    page = admin_client.get(f"/admin/digests/{digest_id}").get_data(as_text=True)
    assert f'value="{typed}"' in page and "Europe/Paris" in page

    _post(admin_client, f"/admin/digests/{digest_id}/pause", reason="checking a <b>link</b>")
    digest = _digest_row(app, digest_id)
    assert (digest.status, digest.pause_reason) == (DigestStatus.PAUSED, "checking a <b>link</b>")
    dashboard = admin_client.get(f"/admin/digests/{digest_id}/delivery").get_data(as_text=True)
    assert "Paused: checking a &lt;b&gt;link&lt;/b&gt;" in dashboard

    _post(admin_client, f"/admin/digests/{digest_id}/resume")
    assert _digest_row(app, digest_id).status == DigestStatus.SCHEDULED

    refused = _post(admin_client, f"/admin/digests/{digest_id}/cancel")
    assert refused.status_code == 302
    assert _digest_row(app, digest_id).status == DigestStatus.SCHEDULED
    _post(admin_client, f"/admin/digests/{digest_id}/cancel", confirm="yes")
    assert _digest_row(app, digest_id).status == DigestStatus.CANCELLED


@pytest.mark.parametrize(
    ("send_at", "message"),
    [
        ("", "Enter the date and time to send"),
        ("next tuesday", "is not a date and time"),
        ("2001-01-01T09:00", "That time has passed"),
    ],
)
def test_bad_send_times_are_refused_with_a_message(
    app: Flask, admin_client: FlaskClient, send_at: str, message: str
) -> None:
    digest_id = _digest(app)
    response = _post(admin_client, f"/admin/digests/{digest_id}/schedule", send_at=send_at)
    assert response.status_code == 302
    page = admin_client.get(response.headers["Location"]).get_data(as_text=True)
    assert message in page
    assert _digest_row(app, digest_id).status == DigestStatus.DRAFT


def test_impossible_transitions_are_flashed_never_500(
    app: Flask, admin_client: FlaskClient
) -> None:
    digest_id = _digest(app)
    for action in ("pause", "resume"):
        response = _post(admin_client, f"/admin/digests/{digest_id}/{action}")
        assert response.status_code == 302, action
        page = admin_client.get(response.headers["Location"]).get_data(as_text=True)
        assert f"Not {action}d: digest {digest_id} is draft" in page
    _post(admin_client, f"/admin/digests/{digest_id}/cancel", confirm="yes")
    for path, data in (("schedule", {"when": "now"}), ("cancel", {"confirm": "yes"})):
        response = _post(admin_client, f"/admin/digests/{digest_id}/{path}", **data)
        assert response.status_code == 302
        page = admin_client.get(response.headers["Location"]).get_data(as_text=True)
        assert "is cancelled; it cannot be" in page
    assert _post(admin_client, "/admin/digests/999999/pause").status_code == 404


def test_send_now_and_watch_the_dashboard_reach_sent(app: Flask, admin_client: FlaskClient) -> None:
    digest_id = _digest(app)
    _subscribers(app, 3)
    with app.app_context():
        db.session.add(
            Delivery(
                kind=DeliveryKind.TEST,
                digest_id=digest_id,
                to_address="ed@example.org",
                status=DeliveryStatus.SENT,
            )
        )
        db.session.commit()
    response = _post(admin_client, f"/admin/digests/{digest_id}/schedule", when="now")
    assert response.status_code == 302
    dashboard = admin_client.get(f"/admin/digests/{digest_id}/delivery").get_data(as_text=True)
    assert '<meta http-equiv="refresh" content="5">' in dashboard  # live while it sends
    result = app.test_cli_runner().invoke(args=["deliver"])
    assert result.exit_code == 0, result.output
    assert _digest_row(app, digest_id).status == DigestStatus.SENT
    dashboard = admin_client.get(f"/admin/digests/{digest_id}/delivery").get_data(as_text=True)
    assert 'http-equiv="refresh"' not in dashboard
    assert f'<progress id="progress-{digest_id}" max="3" value="3">' in dashboard
    assert '<dd data-status="sent">3</dd>' in dashboard  # the test send is not counted
    assert "No failures." in dashboard


def test_dashboard_lists_failures_with_their_reasons(app: Flask, admin_client: FlaskClient) -> None:
    digest_id = _digest(app)
    _subscribers(app, 2)
    with app.app_context():
        ids = db.session.scalars(select(Subscriber.id).order_by(Subscriber.id)).all()
        db.session.add_all(
            [
                Delivery(kind=DeliveryKind.DIGEST, digest_id=digest_id, subscriber_id=ids[0],
                         status=DeliveryStatus.FAILED, last_error="550 5.1.1 <b>no such user</b>"),
                Delivery(kind=DeliveryKind.DIGEST, digest_id=digest_id, subscriber_id=ids[1],
                         status=DeliveryStatus.QUEUED),
            ]
        )  # fmt: skip
        db.session.get(Digest, digest_id).status = DigestStatus.SENDING  # type: ignore[union-attr]
        db.session.commit()
    dashboard = admin_client.get(f"/admin/digests/{digest_id}/delivery").get_data(as_text=True)
    assert "550 5.1.1 &lt;b&gt;no such user&lt;/b&gt;" in dashboard
    assert 'max="2" value="1"' in dashboard
    assert f"/admin/subscribers/{ids[0]}" in dashboard
    page = admin_client.get(f"/admin/digests/{digest_id}").get_data(as_text=True)
    assert '<dd data-status="failed">1</dd>' in page and "delivery dashboard" in page


def test_outbox_with_another_backend_says_so(admin_client: FlaskClient) -> None:
    page = admin_client.get("/admin/outbox").get_data(as_text=True)
    assert "Mail is not being written to files" in page
    assert admin_client.get("/admin/outbox/anything.eml").status_code == 404


def test_outbox_lists_newest_first_and_shows_messages_inert(
    app: Flask, admin_client: FlaskClient, tmp_path: Path
) -> None:
    import os

    hostile = (
        "From: news@example.org\r\nTo: a@example.org\r\nSubject: {subject}\r\n"
        "Date: Wed, 25 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        ""
        "<script>alert(1)</script> {{{{ config }}}}\r\n"
        "--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        '<html><head></head><body><a href="https://example.org/film">film</a>'
        "<script>alert(2)</script></body></html>\r\n--b--\r\n"
    )
    for n, subject in enumerate(["Older <script>x</script>", "Newer"]):
        path = tmp_path / f"msg-{n}.eml"
        path.write_text(hostile.format(subject=subject))
        os.utime(path, ns=(10**18 + n, 10**18 + n))
    app.extensions["mailer.backend"] = backend_from_url(f"file://{tmp_path}")
    listing = admin_client.get("/admin/outbox").get_data(as_text=True)
    assert listing.index("Newer") < listing.index("Older")
    assert "<script>x" not in listing
    page = admin_client.get("/admin/outbox/msg-0.eml").get_data(as_text=True)
    assert "<script>" not in page and "&lt;script&gt;alert(1)" in page
    assert "{{ config }}" in page
    frame = re.search(r'<iframe src="([^"]+)" sandbox="([^"]*)"', page)
    assert frame is not None and "allow-scripts" not in frame.group(2)
    html = admin_client.get(frame.group(1))
    assert "script-src" not in html.headers["Content-Security-Policy"]
    assert "sandbox" in html.headers["Content-Security-Policy"]
    assert html.headers["X-Frame-Options"] == "SAMEORIGIN"
    body = html.get_data(as_text=True)
    assert '<head><base target="_blank">' in body  # links open outside the frame
    assert 'href="https://example.org/film"' in body
    for bad in ("../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "nothing.eml", ".hidden.eml"):
        assert admin_client.get(f"/admin/outbox/{bad}").status_code == 404, bad
