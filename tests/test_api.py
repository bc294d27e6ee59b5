"""The JSON API: films, suppressions, pagination, error shape and limits, OpenAPI document."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from mailer.api_tokens import create_api_token
from mailer.extensions import db
from mailer.models import (
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Digest,
    DigestFilm,
    DigestStatus,
    Film,
    Subscriber,
    Suppression,
)
from tests.factories import assert_error

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture
def auth(app) -> dict[str, str]:
    """Headers carrying a valid API token."""
    with app.app_context():
        _, plaintext = create_api_token("tests", NOW)
        db.session.commit()
    return {"Authorization": f"Bearer {plaintext}"}


def add_film(app, **fields) -> int:
    with app.app_context():
        film = Film(**{"slug": "a-film", "title": "A Film", **fields})
        db.session.add(film)
        db.session.commit()
        return film.id


# --- films ---------------------------------------------------------------------------------


def test_create_get_update_delete_a_film(app, client, auth) -> None:
    created = client.post(
        "/api/v1/films",
        json={
            "title": "Under the Sun",
            "director": "Vitaly Mansky",
            "year": 2015,
            "release_date": "2027-03-01",
            "early_access_at": "2027-02-01T09:00:00",
            "watch_url": "https://example.org/watch",
        },
        headers=auth,
    )
    assert created.status_code == 201, created.get_json()
    film = created.get_json()
    assert film["slug"] == "under-the-sun"
    assert film["early_access_at"] == "2027-02-01T09:00:00+00:00"
    assert film["release_date"] == "2027-03-01" and film["country"] == ""

    got = client.get(f"/api/v1/films/{film['id']}", headers=auth)
    assert got.status_code == 200 and got.get_json() == film

    patched = client.patch(
        f"/api/v1/films/{film['id']}", json={"title": "Under the Sun (2015)"}, headers=auth
    )
    assert patched.status_code == 200
    assert patched.get_json()["title"] == "Under the Sun (2015)"
    assert patched.get_json()["slug"] == "under-the-sun"  # a new title keeps the public URL
    assert patched.get_json()["director"] == "Vitaly Mansky"

    cleared = client.patch(
        f"/api/v1/films/{film['id']}", json={"release_date": None, "early_access_at": None},
        headers=auth,
    )  # fmt: skip
    assert cleared.get_json()["release_date"] is None

    deleted = client.delete(f"/api/v1/films/{film['id']}", headers=auth)
    assert deleted.status_code == 204 and deleted.get_data() == b""
    assert_error(client.get(f"/api/v1/films/{film['id']}", headers=auth), 404, "not_found")


def test_film_rules_come_from_validate_film(app, client, auth) -> None:
    add_film(app)
    bad = client.post(
        "/api/v1/films",
        json={
            "title": "Bad\r\nBcc: x@example.org",
            "watch_url": "javascript:alert(1)",
            "year": 1066,
        },
        headers=auth,
    )
    body = assert_error(bad, 422, "validation_error")
    assert body["errors"] == {
        "title": ["must be a single line: remove the line break"],
        "watch_url": ["must be an http or https URL"],
        "year": ["must be between 1870 and 2200"],
    }
    clash = client.post("/api/v1/films", json={"title": "A Film"}, headers=auth)
    assert assert_error(clash, 422, "validation_error")["errors"] == {
        "slug": ["is already used by another film"]
    }
    with app.app_context():
        assert db.session.scalar(select(func.count(Film.id))) == 1


def test_film_types_unknown_fields_and_partial_rules(app, client, auth) -> None:
    film_id = add_film(app, release_date=datetime(2027, 3, 1).date())
    typed = client.post(
        "/api/v1/films", json={"title": 5, "year": "2001", "rating": 5}, headers=auth
    )
    errors = assert_error(typed, 422, "validation_error")["errors"]
    assert set(errors) == {"title", "year", "rating"}
    missing = client.post("/api/v1/films", json={}, headers=auth)
    assert "title" in assert_error(missing, 422, "validation_error")["errors"]
    # A partial change is checked against the fields it leaves alone.
    late = client.patch(
        f"/api/v1/films/{film_id}", json={"early_access_at": "2027-04-01T00:00:00Z"}, headers=auth
    )
    assert assert_error(late, 422, "validation_error")["errors"] == {
        "early_access_at": ["must be before the public release date"]
    }
    not_list = client.post("/api/v1/films", json=["title"], headers=auth)
    assert_error(not_list, 422, "validation_error")


def test_film_list_pages_with_a_cursor(app, client, auth) -> None:
    with app.app_context():
        db.session.add_all(Film(slug=f"film-{n}", title=f"Film {n}") for n in range(5))
        db.session.commit()
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/api/v1/films", query_string=query, headers=auth).get_json()
        seen += [film["slug"] for film in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"film-{n}" for n in range(5)] and pages == 3
    everything = client.get("/api/v1/films", headers=auth).get_json()
    assert len(everything["items"]) == 5 and everything["next_cursor"] is None

    forged = client.get("/api/v1/films", query_string={"cursor": "MQ"}, headers=auth)
    assert assert_error(forged, 400, "bad_request")["errors"] == {
        "cursor": ["cursor is not valid for this list"]
    }
    # A cursor of another list is refused too.
    with app.app_context():
        db.session.add_all(
            Suppression(email_hash=f"{n:064x}", email=None, reason="manual") for n in range(3)
        )
        db.session.commit()
    other = client.get("/api/v1/suppressions", query_string={"limit": 1}, headers=auth)
    foreign = other.get_json()["next_cursor"]
    assert foreign
    wrong_list = client.get("/api/v1/films", query_string={"cursor": foreign}, headers=auth)
    assert_error(wrong_list, 400, "bad_request")
    for limit in ("0", "201", "many"):
        bad_limit = client.get("/api/v1/films", query_string={"limit": limit}, headers=auth)
        assert "limit" in assert_error(bad_limit, 422, "validation_error")["errors"]


@pytest.mark.parametrize(
    ("status", "refused"),
    [
        (DigestStatus.DRAFT, False),
        (DigestStatus.CANCELLED, False),
        (DigestStatus.SCHEDULED, True),
        (DigestStatus.SENDING, True),
        (DigestStatus.PAUSED, True),
        (DigestStatus.SENT, True),
    ],
)
def test_delete_refuses_a_film_mailed_in_a_digest(
    app, client, auth, status: DigestStatus, refused: bool
) -> None:
    film_id = add_film(app)
    with app.app_context():
        digest = Digest(subject="Issue 1", status=status)
        digest.films.append(DigestFilm(film_id=film_id, position=0))
        db.session.add(digest)
        db.session.commit()
        digest_id = digest.id
    response = client.delete(f"/api/v1/films/{film_id}", headers=auth)
    with app.app_context():
        remaining_films = db.session.scalar(select(func.count(Film.id)))
        remaining_links = db.session.scalar(select(func.count()).select_from(DigestFilm))
    if refused:
        body = assert_error(response, 409, "film_in_use")
        assert str(digest_id) in body["message"]
        assert (remaining_films, remaining_links) == (1, 1)
    else:
        assert response.status_code == 204
        assert (remaining_films, remaining_links) == (0, 0)


# --- suppressions --------------------------------------------------------------------------


def test_suppress_list_and_remove_addresses(app, client, auth) -> None:
    with app.app_context():
        subscriber = Subscriber(email="fan@example.org", nonce="n", status="confirmed")
        db.session.add(subscriber)
        db.session.flush()
        db.session.add(
            Delivery(kind=DeliveryKind.WELCOME, subscriber_id=subscriber.id, next_attempt_at=NOW)
        )
        db.session.commit()

    created = client.post(
        "/api/v1/suppressions",
        json={"email": "  Fan@Example.ORG", "reason": "complaint", "note": " spam report "},
        headers=auth,
    )
    assert created.status_code == 201, created.get_json()
    entry = created.get_json()
    assert entry["email"] == "fan@example.org"
    assert entry["email_hash"] == hashlib.sha256(b"fan@example.org").hexdigest()
    assert (entry["reason"], entry["note"]) == ("complaint", "spam report")
    with app.app_context():
        assert db.session.scalar(select(Delivery.status)) == DeliveryStatus.SKIPPED

    again = client.post("/api/v1/suppressions", json={"email": "fan@example.org"}, headers=auth)
    assert again.status_code == 200 and again.get_json() == entry

    manual = client.post("/api/v1/suppressions", json={"email": "b@example.org"}, headers=auth)
    assert manual.status_code == 201 and manual.get_json()["reason"] == "manual"

    listed = client.get("/api/v1/suppressions", headers=auth).get_json()
    assert [e["email"] for e in listed["items"]] == ["b@example.org", "fan@example.org"]
    only = client.get("/api/v1/suppressions", query_string={"reason": "complaint"}, headers=auth)
    assert [e["id"] for e in only.get_json()["items"]] == [entry["id"]]
    first = client.get("/api/v1/suppressions", query_string={"limit": 1}, headers=auth).get_json()
    second = client.get(
        "/api/v1/suppressions", query_string={"limit": 1, "cursor": first["next_cursor"]},
        headers=auth,
    ).get_json()  # fmt: skip
    assert [first["items"][0]["id"], second["items"][0]["id"]] == [
        manual.get_json()["id"],
        entry["id"],
    ]
    assert second["next_cursor"] is None

    removed = client.delete(f"/api/v1/suppressions/{entry['id']}", headers=auth)
    assert removed.status_code == 204
    gone = client.delete(f"/api/v1/suppressions/{entry['id']}", headers=auth)
    assert_error(gone, 404, "not_found")


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"email": "not an address"}, "email"),
        ({"email": "a@example.org\r\nBcc: b@example.org"}, "email"),
        ({"email": ""}, "email"),
        ({"email": "a@example.org", "reason": "erased"}, "reason"),
        ({"email": "a@example.org", "note": "x" * 2001}, "note"),
        ({"reason": "manual"}, "email"),
    ],
)
def test_suppression_input_is_checked(app, client, auth, payload: dict, field: str) -> None:
    response = client.post("/api/v1/suppressions", json=payload, headers=auth)
    assert field in assert_error(response, 422, "validation_error")["errors"]
    with app.app_context():
        assert db.session.scalar(select(func.count(Suppression.id))) == 0


# --- errors and limits ---------------------------------------------------------------------


def test_routing_errors_are_json_under_the_api_only(client, auth) -> None:
    assert_error(client.get("/api/v1/nothing-here", headers=auth), 404, "not_found")
    assert_error(client.get("/api/v1/films/99999999999999999999", headers=auth), 404, "not_found")
    not_allowed = client.put("/api/v1/films", headers=auth)
    assert_error(not_allowed, 405, "method_not_allowed")
    assert set(not_allowed.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    page = client.get("/no-such-page")
    assert page.status_code == 404 and page.mimetype == "text/html"


def test_bad_json_and_wrong_content_type(client, auth) -> None:
    broken = client.post(
        "/api/v1/films", data="{not json", content_type="application/json", headers=auth
    )
    assert_error(broken, 400, "bad_request")
    form = client.post("/api/v1/films", data={"title": "X"}, headers=auth)
    assert_error(form, 415, "unsupported_media_type")
    text = client.post("/api/v1/suppressions", data="a@example.org", headers=auth)
    assert_error(text, 415, "unsupported_media_type")


def test_request_body_size_is_limited(app, client, auth) -> None:
    big = client.post(
        "/api/v1/films", json={"title": "X", "description": "x" * 70_000}, headers=auth
    )
    assert_error(big, 413, "payload_too_large")
    with app.app_context():
        assert db.session.scalar(select(func.count(Film.id))) == 0


def test_no_csrf_token_needed_with_a_bearer_token(app, client, auth) -> None:
    assert app.config.get("WTF_CSRF_ENABLED", True)
    response = client.post("/api/v1/films", json={"title": "Plain"}, headers=auth)
    assert response.status_code == 201


def test_rate_limit_is_per_token(test_env, migrated) -> None:
    from mailer import create_app

    app = create_app({"TESTING": True, "MAILER_API_RATE_LIMIT": "3 per minute"})
    client = app.test_client()
    with app.app_context():
        _, first = create_api_token("one", NOW)
        _, second = create_api_token("two", NOW)
        db.session.commit()
    try:
        one = {"Authorization": f"Bearer {first}"}
        for _ in range(3):
            assert client.get("/api/v1/films", headers=one).status_code == 200
        limited = client.get("/api/v1/films", headers=one)
        assert_error(limited, 429, "rate_limited")
        assert int(limited.headers["Retry-After"]) > 0
        other = client.get("/api/v1/films", headers={"Authorization": f"Bearer {second}"})
        assert other.status_code == 200
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def test_unexpected_failure_is_a_json_500(app, client, auth, monkeypatch) -> None:
    import mailer.api.films as films_api

    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(films_api, "paginate", explode)
    response = client.get("/api/v1/films", headers=auth)
    body = assert_error(response, 500, "server_error")
    assert "disk on fire" not in body["message"]


# --- the OpenAPI document ------------------------------------------------------------------


def test_openapi_document_describes_the_api(client) -> None:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    spec = response.get_json()
    assert spec["openapi"].startswith("3.")
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
    }
    assert spec["security"] == [{"bearerAuth": []}]
    assert set(spec["paths"]) == {
        "/api/v1/bounces",
        "/api/v1/films",
        "/api/v1/films/{film_id}",
        "/api/v1/digests",
        "/api/v1/digests/{digest_id}",
        "/api/v1/digests/{digest_id}/send",
        "/api/v1/digests/{digest_id}/pause",
        "/api/v1/digests/{digest_id}/resume",
        "/api/v1/digests/{digest_id}/cancel",
        "/api/v1/digests/{digest_id}/duplicate",
        "/api/v1/subscribers",
        "/api/v1/subscribers/{subscriber_id}",
        "/api/v1/suppressions",
        "/api/v1/suppressions/{suppression_id}",
    }
    error = spec["components"]["schemas"]["Error"]
    assert set(error["properties"]) == {"status", "code", "message", "errors"}
    for path in spec["paths"].values():
        for method, operation in path.items():
            if method != "parameters":
                assert "default" in operation["responses"]


def test_a_lost_race_for_a_unique_value_is_a_409(app, client, auth, monkeypatch) -> None:
    import mailer.api.films as films_api

    add_film(app)

    def racing_save(film: Film | None, raw: dict) -> Film:
        # As if another request stored the same slug between our check and our insert.
        twin = Film(slug="a-film", title="A Film")
        db.session.add(twin)
        db.session.flush()
        return twin

    monkeypatch.setattr(films_api, "save_film", racing_save)
    response = client.post("/api/v1/films", json={"title": "A Film"}, headers=auth)
    assert_error(response, 409, "conflict")
    with app.app_context():
        assert db.session.scalar(select(func.count(Film.id))) == 1


def test_nul_bytes_are_refused_with_the_fields_that_hold_them(app, client, auth) -> None:
    """PostgreSQL text cannot hold NUL: a query or body carrying one is a 422, never a 500."""
    listed = client.get("/api/v1/subscribers", query_string={"email": "a\x00b"}, headers=auth)
    assert assert_error(listed, 422, "validation_error")["errors"] == {
        "email": ["Text may not contain NUL (\\u0000) characters."]
    }
    created = client.post(
        "/api/v1/films",
        json={"slug": "nul", "title": "Bad\x00title", "director": "x\x00"},
        headers=auth,
    )
    assert set(assert_error(created, 422, "validation_error")["errors"]) == {"title", "director"}
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Film)) == 0
