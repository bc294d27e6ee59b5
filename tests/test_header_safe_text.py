"""Line and paragraph separators in one-line text (subjects, preheaders, film titles).

Every character ``str.splitlines()`` breaks on is a line break to the email package, so a value
that may reach a mail header is refused with its field named wherever it comes in, and rows stored
before that rule neither break the admin page nor fail deliveries without saying why.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import func, select

from mailer.api_tokens import create_api_token
from mailer.extensions import db
from mailer.journal import queue_message
from mailer.models import (
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Digest,
    DigestStatus,
    Film,
    Subscriber,
)
from mailer.sending import Sender, claim_batch
from mailer.text_rules import line_problem
from tests.conftest import admin_csrf
from tests.factories import add_digest, add_subscribers, assert_error

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
# What str.splitlines() splits on, beyond CR and LF, and other controls a header cannot carry.
SEPARATORS = ["\u2028", "\u2029", "\x85", "\v", "\f", "\x1c", "\x1d", "\x1e", "\r", "\n"]
CONTROLS = ["\x07", "\x1b", "\x7f", "\x9b", "\t"]
IDS = [f"U+{ord(c):04X}" for c in SEPARATORS]


@pytest.fixture
def auth(app: Flask) -> dict[str, str]:
    """Headers carrying a valid API token."""
    with app.app_context():
        _, plaintext = create_api_token("cms", NOW)
        db.session.commit()
    return {"Authorization": f"Bearer {plaintext}"}


def _count(app: Flask, model: type) -> int:
    with app.app_context():
        return int(db.session.scalar(select(func.count()).select_from(model)) or 0)


def test_every_line_break_and_control_character_is_named() -> None:
    for char in SEPARATORS:
        assert char in "".join(f"a{char}b".splitlines(keepends=True))  # splitlines splits here
        problem = line_problem(f"Hello{char}world")
        assert problem is not None and "single line" in problem, repr(char)
        assert char in "\r\n" or f"(U+{ord(char):04X}" in problem
    for char in CONTROLS:
        problem = line_problem(f"Hello{char}world")
        assert problem is not None and "control character" in problem, repr(char)
    assert line_problem("Docs from Zürich — “quoted” ☕") is None


@pytest.mark.parametrize("char", SEPARATORS, ids=IDS)
@pytest.mark.parametrize("field", ["subject", "preheader"])
def test_admin_digest_form_refuses_a_separator_beside_the_field(
    app: Flask, admin_client: FlaskClient, field: str, char: str
) -> None:
    data = {"subject": "November", "preheader": "", "intro_markdown": "Hi"}
    data[field] = f"Part one{char}Bcc: victim@example.org"
    response = admin_client.post(
        "/admin/digests/new", data={**data, "csrf_token": admin_csrf(admin_client)}
    )
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert f'id="e-{field}"' in html and "single line" in html
    assert _count(app, Digest) == 0


@pytest.mark.parametrize("char", SEPARATORS, ids=IDS)
@pytest.mark.parametrize("field", ["subject", "preheader"])
def test_api_refuses_a_separator_in_a_digest_naming_the_field(
    app: Flask, client: FlaskClient, auth: dict[str, str], field: str, char: str
) -> None:
    body = {"subject": "November", field: f"Part one{char}Part two"}
    created = client.post("/api/v1/digests", json=body, headers=auth)
    errors = assert_error(created, 422, "validation_error")["errors"]
    assert list(errors) == [field] and "single line" in errors[field][0]
    assert _count(app, Digest) == 0


@pytest.mark.parametrize("char", SEPARATORS, ids=IDS)
def test_api_refuses_a_separator_in_a_film_title_naming_the_field(
    app: Flask, client: FlaskClient, auth: dict[str, str], char: str
) -> None:
    created = client.post("/api/v1/films", json={"title": f"A{char}B"}, headers=auth)
    errors = assert_error(created, 422, "validation_error")["errors"]
    assert list(errors) == ["title"] and "single line" in errors["title"][0]
    assert _count(app, Film) == 0


@pytest.mark.parametrize("char", SEPARATORS, ids=IDS)
def test_admin_film_form_refuses_a_separator_in_the_title(
    app: Flask, admin_client: FlaskClient, char: str
) -> None:
    data = {"title": f"A{char}B", "slug": "a-b", "csrf_token": admin_csrf(admin_client)}
    response = admin_client.post("/admin/films/new", data=data)
    assert response.status_code == 400
    assert "single line" in response.get_data(as_text=True)
    assert _count(app, Film) == 0


@pytest.mark.parametrize("char", ["\u2028", "\u2029", "\x85", "\v"], ids=IDS[:4])
def test_import_films_refuses_a_separator_naming_row_and_field(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path, char: str
) -> None:
    rows = [{"title": "Fine"}, {"title": "Also fine", "director": f"Jane{char}Doe"}]
    path = tmp_path / "films.json"
    path.write_text(json.dumps(rows))
    result = runner.invoke(args=["import-films", str(path)])
    assert result.exit_code != 0
    assert "row 2, field director" in result.output and "single line" in result.output
    assert _count(app, Film) == 0


def test_multi_line_text_keeps_its_line_breaks(
    app: Flask, client: FlaskClient, auth: dict[str, str]
) -> None:
    body = {"subject": "November", "intro": "One\n\nTwo\u2028three\ttabbed"}
    created = client.post("/api/v1/digests", json=body, headers=auth)
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["intro"] == body["intro"]


def _stored_digest(app: Flask, subject: str, preheader: str = "") -> int:
    """A digest written before the rule existed: straight into the table."""
    with app.app_context():
        digest_id = add_digest(subject, now=NOW, status=DigestStatus.SENDING)
        digest = db.session.get(Digest, digest_id)
        assert digest is not None
        digest.preheader = preheader
        db.session.commit()
        return digest_id


def test_admin_digest_page_shows_a_stored_separator_instead_of_failing(
    app: Flask, admin_client: FlaskClient
) -> None:
    digest_id = _stored_digest(app, "Part one\u2028Part two", "Pre\u2029header")
    page = admin_client.get(f"/admin/digests/{digest_id}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'id="e-subject"' in html and 'id="e-preheader"' in html
    assert "cannot be sent as it is" in html
    frame = admin_client.get(f"/admin/digests/{digest_id}/preview.html")
    assert frame.status_code == 200


def test_delivery_of_a_stored_separator_fails_with_the_reason(app: Flask) -> None:
    digest_id = _stored_digest(app, "Part one\u2028Part two")
    with app.app_context():
        (reader_id,) = add_subscribers(1, now=NOW)
        reader = db.session.get_one(Subscriber, reader_id)
        queue_message(DeliveryKind.DIGEST, reader, NOW, digest_id=digest_id)
        queue_message(
            DeliveryKind.TEST, None, NOW, to_address="editor@example.org", digest_id=digest_id
        )
        db.session.commit()
        backend = app.extensions["mailer.backend"]
        stats = Sender("w", backend, lambda: NOW).send_batch(claim_batch("w", NOW, 10, 60))
        assert (stats.failed, stats.sent) == (2, 0)
        assert backend.outbox == []
        db.session.expire_all()
        errors = db.session.scalars(
            select(Delivery.last_error).where(Delivery.status == DeliveryStatus.FAILED)
        ).all()
        assert len(errors) == 2
        assert all("Subject" in e and "U+2028" in e for e in errors), errors
