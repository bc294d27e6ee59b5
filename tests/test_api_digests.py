"""The JSON API's digests: compose, list, read with counts, send, pause, resume, cancel."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import func, select

from mailer.api.digests import CountsSchema
from mailer.api_tokens import create_api_token
from mailer.extensions import db
from mailer.models import (
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Digest,
    DigestStatus,
    Film,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from tests.factories import assert_error

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture
def auth(app: Flask) -> dict[str, str]:
    """Headers carrying a valid API token."""
    with app.app_context():
        _, plaintext = create_api_token("cms", NOW)
        db.session.commit()
    return {"Authorization": f"Bearer {plaintext}"}


@pytest.fixture
def film_ids(app: Flask) -> list[int]:
    """Three films of the catalogue."""
    with app.app_context():
        films = [Film(slug=f"film-{n}", title=f"Film {n}") for n in range(1, 4)]
        db.session.add_all(films)
        db.session.commit()
        return [film.id for film in films]


def create(client: FlaskClient, auth: dict[str, str], **fields: object) -> dict:
    """Create a digest through the API and return it."""
    response = client.post("/api/v1/digests", json={"subject": "November", **fields}, headers=auth)
    assert response.status_code == 201, response.get_json()
    body: dict = response.get_json()
    return body


def set_status(app: Flask, digest_id: int, status: DigestStatus, **fields: object) -> None:
    """Move a digest to a status directly, as the worker would."""
    with app.app_context():
        digest = db.session.get(Digest, digest_id)
        assert digest is not None
        digest.status = status
        for name, value in fields.items():
            setattr(digest, name, value)
        db.session.commit()


def add_deliveries(app: Flask, digest_id: int, *statuses: DeliveryStatus) -> None:
    """Deliveries of a digest in the given statuses, one subscriber each."""
    with app.app_context():
        for n, status in enumerate(statuses):
            subscriber = Subscriber(
                email=f"reader{n}@example.org", status=SubscriberStatus.CONFIRMED, nonce=f"n{n}"
            )
            db.session.add(subscriber)
            db.session.flush()
            db.session.add(
                Delivery(
                    kind=DeliveryKind.DIGEST,
                    subscriber_id=subscriber.id,
                    digest_id=digest_id,
                    status=status,
                    next_attempt_at=NOW,
                    created_at=NOW,
                )
            )
        db.session.commit()


def digest_count(app: Flask) -> int:
    """How many digests are stored."""
    with app.app_context():
        return int(db.session.scalar(select(func.count()).select_from(Digest)) or 0)


# --- compose ------------------------------------------------------------------------------------


def test_create_a_digest_with_films_and_notes(client, auth, film_ids) -> None:
    first, second, _ = film_ids
    digest = create(
        client,
        auth,
        subject="  November's films  ",
        preheader="Two new documentaries",
        intro="Hello **everyone**.\r\n\r\nTwo films this month.",
        film_ids=[second, first],
        notes={str(first): "A quiet masterpiece."},
    )
    assert digest["status"] == "draft"
    assert digest["subject"] == "November's films"
    assert digest["intro"] == "Hello **everyone**.\n\nTwo films this month."
    assert digest["film_ids"] == [second, first]
    assert digest["notes"] == {str(first): "A quiet masterpiece."}
    assert digest["counts"] == {"queued": 0, "claimed": 0, "sent": 0, "failed": 0, "skipped": 0}
    assert digest["send_at"] is None and digest["started_at"] is None

    got = client.get(f"/api/v1/digests/{digest['id']}", headers=auth)
    assert got.status_code == 200 and got.get_json() == digest


def test_counts_name_every_delivery_status() -> None:
    assert set(CountsSchema().fields) == {status.value for status in DeliveryStatus}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"subject": ""}, "subject"),
        ({"subject": "Two\nlines"}, "subject"),
        ({"subject": "x" * 201}, "subject"),
        ({"preheader": "bad\x07bell"}, "preheader"),
        ({"intro": "x" * 50_001}, "intro"),
        ({"film_ids": [999]}, "film_ids"),
        ({"film_ids": [1, 1]}, "film_ids"),
        ({"film_ids": "1"}, "film_ids"),
        ({"subject": 5}, "subject"),
        ({"notes": {"1": "x" * 2001}}, "notes.1"),
        ({"film_ids": [1], "notes": {"2": "for a film that is not featured"}}, "notes.2"),
    ],
)
def test_invalid_digests_are_refused_and_nothing_is_stored(
    app, client, auth, film_ids, fields, field
) -> None:
    payload = {"subject": "November", "film_ids": [film_ids[0]], **fields}
    response = client.post("/api/v1/digests", json=payload, headers=auth)
    body = assert_error(response, 422, "validation_error")
    assert field in body["errors"], body
    assert digest_count(app) == 0


def test_a_subject_is_required(client, auth) -> None:
    body = assert_error(
        client.post("/api/v1/digests", json={}, headers=auth), 422, "validation_error"
    )
    assert "subject" in body["errors"]


def test_list_digests_newest_first_a_page_at_a_time(client, auth) -> None:
    ids = [create(client, auth, subject=f"Issue {n}")["id"] for n in range(3)]
    first = client.get("/api/v1/digests?limit=2", headers=auth).get_json()
    assert [d["id"] for d in first["items"]] == [ids[2], ids[1]]
    assert "counts" not in first["items"][0]
    second = client.get(f"/api/v1/digests?limit=2&cursor={first['next_cursor']}", headers=auth)
    assert [d["id"] for d in second.get_json()["items"]] == [ids[0]]
    assert second.get_json()["next_cursor"] is None
    bad = client.get("/api/v1/digests?cursor=forged", headers=auth)
    assert "cursor" in assert_error(bad, 400, "bad_request")["errors"]


def test_unknown_digests_are_404(client, auth) -> None:
    for method, path in [
        ("get", "/api/v1/digests/404"),
        ("patch", "/api/v1/digests/404"),
        ("post", "/api/v1/digests/404/send"),
        ("post", "/api/v1/digests/404/pause"),
        ("post", "/api/v1/digests/404/resume"),
        ("post", "/api/v1/digests/404/cancel"),
        ("post", "/api/v1/digests/404/duplicate"),
        ("get", f"/api/v1/digests/{2**40}"),
    ]:
        response = getattr(client, method)(path, json={}, headers=auth)
        assert_error(response, 404, "not_found")


def test_digests_need_a_token(client) -> None:
    assert_error(client.get("/api/v1/digests"), 401, "unauthorized")
    assert_error(client.post("/api/v1/digests/1/send"), 401, "unauthorized")
    assert_error(
        client.post(
            "/api/v1/digests", json={"subject": "x"}, headers={"Authorization": "Bearer no"}
        ),
        401,
        "unauthorized",
    )


def test_bodies_must_be_json(client, auth) -> None:
    response = client.post(
        "/api/v1/digests", data="subject=x", content_type="text/plain", headers=auth
    )
    assert_error(response, 415, "unsupported_media_type")


# --- update and duplicate ---------------------------------------------------------------------


def test_patch_changes_only_what_is_sent(client, auth, film_ids) -> None:
    first, second, third = film_ids
    digest = create(
        client, auth, intro="Hi", film_ids=[first, second], notes={str(first): "keep me"}
    )
    url = f"/api/v1/digests/{digest['id']}"

    renamed = client.patch(url, json={"subject": "December"}, headers=auth).get_json()
    assert renamed["subject"] == "December" and renamed["intro"] == "Hi"
    assert renamed["film_ids"] == [first, second] and renamed["notes"] == {str(first): "keep me"}

    refilmed = client.patch(url, json={"film_ids": [third, first]}, headers=auth).get_json()
    assert refilmed["film_ids"] == [third, first] and refilmed["notes"] == {str(first): "keep me"}

    renoted = client.patch(url, json={"notes": {str(third): "new"}}, headers=auth).get_json()
    assert renoted["film_ids"] == [third, first] and renoted["notes"] == {str(third): "new"}

    bad = client.patch(url, json={"subject": "a\nb"}, headers=auth)
    assert "subject" in assert_error(bad, 422, "validation_error")["errors"]
    assert client.get(url, headers=auth).get_json()["subject"] == "December"


@pytest.mark.parametrize(
    "status", [DigestStatus.SENDING, DigestStatus.SENT, DigestStatus.CANCELLED]
)
def test_a_digest_that_went_out_cannot_be_changed(app, client, auth, status) -> None:
    digest = create(client, auth)
    set_status(app, digest["id"], status)
    response = client.patch(f"/api/v1/digests/{digest['id']}", json={"subject": "x"}, headers=auth)
    body = assert_error(response, 409, "digest_locked")
    assert status.value in body["message"] and "duplicate" in body["message"]


def test_duplicate_makes_a_new_draft(app, client, auth, film_ids) -> None:
    digest = create(client, auth, film_ids=film_ids[:2], notes={str(film_ids[1]): "n"})
    set_status(app, digest["id"], DigestStatus.SENT)
    response = client.post(f"/api/v1/digests/{digest['id']}/duplicate", headers=auth)
    assert response.status_code == 201
    copy = response.get_json()
    assert copy["id"] != digest["id"] and copy["status"] == "draft"
    assert copy["subject"] == digest["subject"]
    assert copy["film_ids"] == digest["film_ids"] and copy["notes"] == digest["notes"]


# --- send, pause, resume, cancel --------------------------------------------------------------


def test_send_now_schedules_it_at_once(client, auth) -> None:
    digest = create(client, auth)
    before = utcnow()
    sent = client.post(f"/api/v1/digests/{digest['id']}/send", headers=auth)
    assert sent.status_code == 200, sent.get_json()
    body = sent.get_json()
    assert body["status"] == "scheduled"
    assert before <= datetime.fromisoformat(body["send_at"]) <= utcnow()


def test_send_at_a_time_with_a_zone(client, auth) -> None:
    digest = create(client, auth)
    later = (utcnow() + timedelta(days=2)).replace(microsecond=0)
    in_paris = later.astimezone(UTC).replace(tzinfo=None).isoformat() + "+00:00"
    response = client.post(
        f"/api/v1/digests/{digest['id']}/send", json={"send_at": in_paris}, headers=auth
    )
    assert response.status_code == 200
    assert datetime.fromisoformat(response.get_json()["send_at"]) == later

    # A scheduled digest can be moved to another time, and a time given in any zone is kept.
    zoned = "2030-01-01T10:00:00+01:00"
    moved = client.post(
        f"/api/v1/digests/{digest['id']}/send", json={"send_at": zoned}, headers=auth
    )
    assert moved.get_json()["send_at"] == "2030-01-01T09:00:00+00:00"


@pytest.mark.parametrize(
    "send_at",
    ["2030-01-01T10:00:00", "tomorrow", 5, "9999-12-31T23:59:59-05:00", "9999-06-01T00:00:00Z"],
)
def test_send_at_needs_a_zone(client, auth, send_at) -> None:
    digest = create(client, auth)
    response = client.post(
        f"/api/v1/digests/{digest['id']}/send", json={"send_at": send_at}, headers=auth
    )
    assert "send_at" in assert_error(response, 422, "validation_error")["errors"]
    assert client.get(f"/api/v1/digests/{digest['id']}", headers=auth).get_json()["status"] == (
        "draft"
    )


def test_pause_resume_and_cancel(app, client, auth) -> None:
    digest = create(client, auth)
    url = f"/api/v1/digests/{digest['id']}"
    client.post(f"{url}/send", headers=auth)

    paused = client.post(f"{url}/pause", json={"reason": "typo in the intro"}, headers=auth)
    assert paused.status_code == 200
    assert paused.get_json()["status"] == "paused"
    assert paused.get_json()["pause_reason"] == "typo in the intro"

    resumed = client.post(f"{url}/resume", headers=auth).get_json()
    assert resumed["status"] == "scheduled" and resumed["pause_reason"] == ""

    # A digest already sending resumes sending; without a reason the pause still says why.
    set_status(app, digest["id"], DigestStatus.SENDING, started_at=NOW)
    add_deliveries(app, digest["id"], DeliveryStatus.SENT, DeliveryStatus.QUEUED)
    paused = client.post(f"{url}/pause", headers=auth).get_json()
    assert paused["pause_reason"] == "paused through the API"
    assert client.post(f"{url}/resume", headers=auth).get_json()["status"] == "sending"

    cancelled = client.post(f"{url}/cancel", headers=auth).get_json()
    assert cancelled["status"] == "cancelled" and cancelled["finished_at"] is not None
    assert cancelled["counts"]["sent"] == 1 and cancelled["counts"]["skipped"] == 1
    assert cancelled["counts"]["queued"] == 0


@pytest.mark.parametrize(
    ("status", "action", "words"),
    [
        (DigestStatus.DRAFT, "pause", "only a scheduled or sending digest can be paused"),
        (DigestStatus.DRAFT, "resume", "only a paused digest can be resumed"),
        (DigestStatus.SCHEDULED, "resume", "only a paused digest can be resumed"),
        (DigestStatus.SENDING, "send", "only a draft or scheduled digest can be sent"),
        (DigestStatus.PAUSED, "send", "only a draft or scheduled digest can be sent"),
        (DigestStatus.SENT, "send", "only a draft or scheduled digest can be sent"),
        (DigestStatus.SENT, "pause", "only a scheduled or sending digest can be paused"),
        (DigestStatus.SENT, "cancel", "a sent or cancelled digest cannot be cancelled"),
        (DigestStatus.CANCELLED, "cancel", "a sent or cancelled digest cannot be cancelled"),
        (DigestStatus.CANCELLED, "resume", "only a paused digest can be resumed"),
    ],
)
def test_impossible_changes_of_status_are_409(app, client, auth, status, action, words) -> None:
    digest = create(client, auth)
    set_status(app, digest["id"], status)
    response = client.post(f"/api/v1/digests/{digest['id']}/{action}", headers=auth)
    body = assert_error(response, 409, "invalid_transition")
    assert body["message"] == f"Digest {digest['id']} is {status.value}: {words}."
    after = client.get(f"/api/v1/digests/{digest['id']}", headers=auth).get_json()
    assert after["status"] == status.value


def test_pause_reason_is_checked(client, auth) -> None:
    digest = create(client, auth)
    client.post(f"/api/v1/digests/{digest['id']}/send", headers=auth)
    response = client.post(
        f"/api/v1/digests/{digest['id']}/pause", json={"reason": "x" * 501}, headers=auth
    )
    assert "reason" in assert_error(response, 422, "validation_error")["errors"]


def test_counts_by_delivery_status(app, client, auth) -> None:
    digest = create(client, auth)
    set_status(app, digest["id"], DigestStatus.SENDING, started_at=NOW)
    add_deliveries(
        app,
        digest["id"],
        DeliveryStatus.SENT,
        DeliveryStatus.SENT,
        DeliveryStatus.FAILED,
        DeliveryStatus.QUEUED,
        DeliveryStatus.CLAIMED,
        DeliveryStatus.SKIPPED,
    )
    counts = client.get(f"/api/v1/digests/{digest['id']}", headers=auth).get_json()["counts"]
    assert counts == {"queued": 1, "claimed": 1, "sent": 2, "failed": 1, "skipped": 1}


def test_a_digest_sent_through_the_api_reaches_sent(
    app: Flask, client: FlaskClient, runner: FlaskCliRunner, auth: dict[str, str]
) -> None:
    """The whole path a CMS takes: film, digest, send, then the worker delivers it."""
    with app.app_context():
        db.session.add_all(
            Subscriber(
                email=f"r{n}@example.org",
                status=SubscriberStatus.CONFIRMED,
                nonce=f"x{n}",
                confirmed_at=NOW,
            )
            for n in range(3)
        )
        db.session.commit()
    film = client.post("/api/v1/films", json={"title": "Under the Sun"}, headers=auth)
    digest = create(client, auth, intro="New this month.", film_ids=[film.get_json()["id"]])
    url = f"/api/v1/digests/{digest['id']}"
    assert client.post(f"{url}/send", headers=auth).get_json()["status"] == "scheduled"

    result = runner.invoke(args=["deliver"])
    assert result.exit_code == 0, result.output
    assert "3 sent" in result.output

    done = client.get(url, headers=auth).get_json()
    assert done["status"] == "sent" and done["finished_at"] is not None
    assert done["counts"] == {"queued": 0, "claimed": 0, "sent": 3, "failed": 0, "skipped": 0}
