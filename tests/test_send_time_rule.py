"""One rule for a send time in the past, in the domain, the admin form and the API: refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient

from mailer.api_tokens import create_api_token
from mailer.digests import SendTimePassed, schedule_digest
from mailer.extensions import db
from mailer.models import Digest, DigestStatus
from tests.conftest import admin_csrf

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
PASSED = "That time has passed: choose a later one, or send now."


def _draft(app: Flask) -> int:
    with app.app_context():
        digest = Digest(subject="November", created_at=NOW, updated_at=NOW)
        db.session.add(digest)
        db.session.commit()
        return digest.id


def _stored(app: Flask, digest_id: int) -> Digest:
    with app.app_context():
        digest = db.session.get(Digest, digest_id)
        assert digest is not None
        db.session.expunge(digest)
        return digest


@pytest.mark.parametrize("delta", [timedelta(0), -timedelta(seconds=1), -timedelta(days=400)])
def test_schedule_digest_refuses_a_time_that_has_passed(app: Flask, delta: timedelta) -> None:
    with app.app_context():
        digest = Digest(
            subject="November", status=DigestStatus.DRAFT, created_at=NOW, updated_at=NOW
        )
        with pytest.raises(SendTimePassed, match="has passed"):
            schedule_digest(digest, NOW + delta, NOW)
        assert digest.status == DigestStatus.DRAFT
        schedule_digest(digest, NOW + timedelta(seconds=1), NOW)
        assert digest.send_at == NOW + timedelta(seconds=1)
        schedule_digest(digest, None, NOW)  # no time at all is how "now" is asked for
        assert digest.send_at == NOW


def test_the_api_refuses_a_past_send_at_naming_the_field(app: Flask, client: FlaskClient) -> None:
    digest_id = _draft(app)
    with app.app_context():
        _, token = create_api_token("cms", NOW)
        db.session.commit()
    response = client.post(
        f"/api/v1/digests/{digest_id}/send",
        json={"send_at": "2020-01-01T00:00:00Z"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 422
    body = response.get_json()
    assert body["code"] == "validation_error"
    assert body["errors"] == {"send_at": [PASSED]}
    digest = _stored(app, digest_id)
    assert (digest.status, digest.send_at) == (DigestStatus.DRAFT, None)


def test_the_admin_form_refuses_it_with_the_same_words(
    app: Flask, admin_client: FlaskClient
) -> None:
    digest_id = _draft(app)
    response = admin_client.post(
        f"/admin/digests/{digest_id}/schedule",
        data={"csrf_token": admin_csrf(admin_client), "send_at": "2020-01-01T09:00"},
        follow_redirects=True,
    )
    assert f"Not scheduled: {PASSED}" in response.get_data(as_text=True)
    assert _stored(app, digest_id).status == DigestStatus.DRAFT
