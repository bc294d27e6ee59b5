"""Requests no database or parser can take: a clear 4xx, never a 500 and nothing written.

Lone surrogates in JSON (PostgreSQL text cannot hold them), malformed chunked bodies as a real
server (gunicorn) passes them on, and signed links naming ids no row can have.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import func, select

from mailer.api_tokens import create_api_token
from mailer.extensions import db
from mailer.models import Digest, Film, Subscriber
from mailer.routing import MAX_ID
from tests.conftest import TEST_SECRET
from tests.factories import assert_error
from tests.smtp_server import free_port

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
SURROGATE = "Text may not contain unpaired surrogates (\\ud800 to \\udfff)."


@pytest.fixture
def auth(app: Flask) -> dict[str, str]:
    """Headers carrying a valid API token."""
    with app.app_context():
        _, plaintext = create_api_token("cms", NOW)
        db.session.commit()
    return {"Authorization": f"Bearer {plaintext}"}


def _counts(app: Flask) -> tuple[int, ...]:
    with app.app_context():
        return tuple(
            int(db.session.scalar(select(func.count()).select_from(model)) or 0)
            for model in (Film, Digest, Subscriber)
        )


# Raw JSON text: json.dumps would escape nothing, the client must send the escape itself.
LONE_SURROGATES = [
    ("/api/v1/films", '{"title": "A film \\ud800"}', {"title"}),
    ("/api/v1/films", '{"title": "Fine", "director": "\\udfff", "country": "\\ud83d"}',
     {"director", "country"}),
    ("/api/v1/digests", '{"subject": "Fine", "notes": {"1": "a\\udc00b"}}', {"notes.1"}),
    ("/api/v1/digests", '{"subject": "Fine", "notes": {"\\ud800": "x"}}', {"notes"}),
    ("/api/v1/subscribers", '{"email": "a\\ud800@example.org", "consent_text": "Yes"}',
     {"email"}),
    ("/api/v1/subscribers",
     '{"email": "a@example.org", "consent_text": "Yes", "topics": ["\\ud800"]}', {"topics"}),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "fields"), LONE_SURROGATES)
def test_a_lone_surrogate_in_json_is_a_422_naming_the_field(
    app: Flask, client: FlaskClient, auth: dict[str, str], path: str, body: str, fields: set[str]
) -> None:
    before = _counts(app)
    response = client.post(path, data=body, content_type="application/json", headers=auth)
    errors = assert_error(response, 422, "validation_error")["errors"]
    assert set(errors) == fields
    assert all(messages == [SURROGATE] for messages in errors.values())
    assert _counts(app) == before


def test_a_paired_surrogate_escape_is_an_ordinary_character(
    app: Flask, client: FlaskClient, auth: dict[str, str]
) -> None:
    body = '{"title": "Coffee \\u2615 and \\ud83c\\udfac"}'
    response = client.post(
        "/api/v1/films", data=body, content_type="application/json", headers=auth
    )
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["title"] == "Coffee \u2615 and \U0001f3ac"


# --- Malformed chunked bodies, through gunicorn as in production ------------------------------


@pytest.fixture
def served(app: Flask, test_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """The app on the test database, served by gunicorn on a free loopback port."""
    port = free_port()
    log = (tmp_path / "web.log").open("w")
    command = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1"]
    web = subprocess.Popen(
        [*command, "mailer:create_app()"],
        env={**os.environ, **test_env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert web.poll() is None and time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        web.terminate()
        web.wait(timeout=15)
        log.close()
        assert "Traceback" not in (tmp_path / "web.log").read_text()


def raw_post(address: str, path: str, content_type: str, body: bytes, token: str = "") -> bytes:
    """POST a chunked body byte for byte; the whole answer."""
    host, port = address.split(":")
    head = (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {content_type}\r\n"
        f"Transfer-Encoding: chunked\r\nConnection: close\r\n"
        + (f"Authorization: Bearer {token}\r\n" if token else "")
        + "\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(head.encode() + body)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


MALFORMED_CHUNKS = {
    "size zz": b"zz\r\nabc\r\n0\r\n\r\n",
    "negative size": b"-5\r\nabcde\r\n0\r\n\r\n",
    "missing terminator": b"3\r\nabcdef\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("body", list(MALFORMED_CHUNKS.values()), ids=list(MALFORMED_CHUNKS))
def test_a_malformed_chunked_body_is_a_400(app: Flask, served: str, body: bytes) -> None:
    with app.app_context():
        _, token = create_api_token("cms", NOW)
        db.session.commit()
    form = "application/x-www-form-urlencoded"
    for path, content_type in (("/subscribe", form), ("/admin/sign-in", form)):
        answer = raw_post(served, path, content_type, body)
        assert answer.startswith(b"HTTP/1.1 400 "), (path, answer[:300])
        assert b"could not be understood" in answer
    answer = raw_post(served, "/api/v1/films", "application/json", body, token)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:300]
    assert b'"code":"bad_request"' in answer.replace(b" ", b"")
    assert _counts(app) == (0, 0, 0)


# --- Signed links naming ids no row can have -----------------------------------------------


def signed(purpose: str, payload: object) -> str:
    """A token signed with the app's real key and salt, carrying any payload."""
    return URLSafeTimedSerializer(TEST_SECRET, salt=f"mailer.{purpose}").dumps(payload)


OUT_OF_RANGE = {
    "above 2^31": [MAX_ID + 1, "nonce"],
    "far above": [2**70, "nonce"],
    "negative": [-1, "nonce"],
    "zero": [0, "nonce"],
    "true": [True, "nonce"],
    "float": [1.5, "nonce"],
    "string": ["1", "nonce"],
}


@pytest.mark.parametrize("payload", list(OUT_OF_RANGE.values()), ids=list(OUT_OF_RANGE))
def test_a_signed_link_naming_an_impossible_id_is_an_invalid_link(
    app: Flask, client: FlaskClient, payload: list[object]
) -> None:
    """The preferences page, where it was a 500: nobody's page (404); one-step links keep 400."""
    for purpose, method, status in (
        ("preferences", "get", 404),
        ("unsubscribe", "get", 400),
        ("unsubscribe", "post", 400),
        ("confirm", "get", 400),
    ):
        response = getattr(client, method)(f"/{purpose}/{signed(purpose, payload)}")
        html = response.get_data(as_text=True)
        assert response.status_code == status, (purpose, method, html[:300])
        assert "This link is not valid" in html
    early = client.get(f"/early/{signed('early', [*payload, 1])}")
    assert early.status_code == 404


@pytest.mark.parametrize("film_id", [MAX_ID + 1, 2**70, -1, 0, True])
def test_an_early_access_link_naming_an_impossible_film_is_a_404(
    app: Flask, client: FlaskClient, film_id: object
) -> None:
    with app.app_context():
        reader = Subscriber(email="a@example.org", status="confirmed", nonce="n1")
        reader.wants_early_access = True
        db.session.add(reader)
        db.session.commit()
        reader_id = reader.id
    assert client.get(f"/early/{signed('early', [reader_id, 'n1', film_id])}").status_code == 404
