"""The JSON API's subscribers: list with filters, get, double opt-in, erasure."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from mailer.address_hash import email_hash
from mailer.api_tokens import create_api_token
from mailer.extensions import db
from mailer.models import (
    ConsentEvent,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Subscriber,
    SubscriberStatus,
    Suppression,
    SuppressionReason,
)
from mailer.suppressions import suppress
from tests.factories import assert_error

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
CONSENT = "Yes, send me the monthly digest and early-access invitations."


@pytest.fixture
def auth(app: Flask) -> dict[str, str]:
    """Headers carrying a valid API token named 'site CMS'."""
    with app.app_context():
        _, plaintext = create_api_token("site CMS", NOW)
        db.session.commit()
    return {"Authorization": f"Bearer {plaintext}"}


def add(app: Flask, email: str, status: SubscriberStatus, **fields: object) -> int:
    """A subscriber stored directly; returns its id."""
    with app.app_context():
        subscriber = Subscriber(email=email, status=status, nonce=email, created_at=NOW, **fields)
        db.session.add(subscriber)
        db.session.commit()
        return subscriber.id


def subscribe(client: FlaskClient, auth: dict[str, str], **fields: object):
    """POST a subscription request."""
    body = {"email": "new@example.org", "consent_text": CONSENT, **fields}
    return client.post(
        "/api/v1/subscribers", json=body, headers={**auth, "User-Agent": "site-cms/2.1"}
    )


def count(app: Flask, model: type) -> int:
    """How many rows of a model are stored."""
    with app.app_context():
        return int(db.session.scalar(select(func.count()).select_from(model)) or 0)


# --- create: double opt-in --------------------------------------------------------------------


def test_create_starts_double_opt_in_with_the_consent_recorded(app, client, auth) -> None:
    response = subscribe(client, auth, email=" New@Example.org", topics=["digest"])
    assert response.status_code == 202
    assert "confirmation e-mail" in response.get_json()["message"]
    with app.app_context():
        subscriber = db.session.scalar(select(Subscriber))
        assert subscriber is not None
        assert subscriber.email == "new@example.org"
        assert subscriber.status == SubscriberStatus.PENDING and subscriber.confirmed_at is None
        assert subscriber.source == "api"
        assert subscriber.wants_digest and not subscriber.wants_early_access
        event = db.session.scalar(select(ConsentEvent))
        assert event is not None and event.subscriber_id == subscriber.id
        assert event.action == "subscribe"
        assert event.form == "api:site CMS"
        assert event.consent_text == CONSENT
        assert event.ip == "127.0.0.1" and event.user_agent == "site-cms/2.1"
        kinds = list(db.session.scalars(select(Delivery.kind)))
        assert kinds == [DeliveryKind.CONFIRMATION]


def test_page_url_is_recorded_when_given(app, client, auth) -> None:
    subscribe(client, auth, page_url="https://docs.example.org/films/under-the-sun")
    with app.app_context():
        event = db.session.scalar(select(ConsentEvent))
        assert event is not None
        assert event.page_url == "https://docs.example.org/films/under-the-sun"


def test_every_kind_of_address_gets_the_same_answer(app, client, auth) -> None:
    add(app, "confirmed@example.org", SubscriberStatus.CONFIRMED, confirmed_at=NOW)
    add(app, "pending@example.org", SubscriberStatus.PENDING)
    add(app, "left@example.org", SubscriberStatus.UNSUBSCRIBED)
    with app.app_context():
        suppress("blocked@example.org", SuppressionReason.COMPLAINT, NOW)
        db.session.commit()
    answers = {
        email: subscribe(client, auth, email=email)
        for email in (
            "fresh@example.org",
            "confirmed@example.org",
            "pending@example.org",
            "left@example.org",
            "blocked@example.org",
        )
    }
    assert {(r.status_code, r.get_data()) for r in answers.values()} == {
        (202, answers["fresh@example.org"].get_data())
    }
    with app.app_context():
        statuses = {
            e: s for e, s in db.session.execute(select(Subscriber.email, Subscriber.status))
        }
    # Nothing is confirmed by the API, and a suppressed address is not added.
    assert statuses == {
        "fresh@example.org": "pending",
        "confirmed@example.org": "confirmed",
        "pending@example.org": "pending",
        "left@example.org": "pending",
    }


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"consent_text": None}, "consent_text"),
        ({"consent_text": ""}, "consent_text"),
        ({"email": "not an address"}, "email"),
        ({"email": "a@b\n.example.org"}, "email"),
        ({"email": ""}, "email"),
        ({"topics": []}, "topics"),
        ({"topics": ["everything"]}, "topics.0"),
        ({"page_url": "x" * 2001}, "page_url"),
    ],
)
def test_invalid_requests_are_422_and_store_nothing(app, client, auth, fields, field) -> None:
    body = {"email": "new@example.org", "consent_text": CONSENT, **fields}
    body = {k: v for k, v in body.items() if v is not None}
    response = client.post("/api/v1/subscribers", json=body, headers=auth)
    errors = assert_error(response, 422, "validation_error")["errors"]
    assert field in errors, errors
    assert count(app, Subscriber) == 0 and count(app, Delivery) == 0


# --- list and get -----------------------------------------------------------------------------


def test_list_filters_and_pages(app, client, auth) -> None:
    ada = add(app, "ada@example.org", SubscriberStatus.CONFIRMED, wants_early_access=False)
    adam = add(app, "adam@example.org", SubscriberStatus.PENDING)
    bob = add(app, "bob@example.org", SubscriberStatus.CONFIRMED, wants_digest=False)

    def ids(query: str) -> list[int]:
        response = client.get(f"/api/v1/subscribers{query}", headers=auth)
        assert response.status_code == 200, response.get_json()
        return [item["id"] for item in response.get_json()["items"]]

    assert ids("") == [bob, adam, ada]
    assert ids("?status=confirmed") == [bob, ada]
    assert ids("?topic=early_access") == [bob, adam]
    assert ids("?topic=digest&status=confirmed") == [ada]
    assert ids("?email=ADA") == [adam, ada]
    assert ids("?email=ada@example.org") == [ada]
    assert ids("?email=a%25") == []  # a wildcard is taken literally

    first = client.get("/api/v1/subscribers?limit=2", headers=auth).get_json()
    assert [s["id"] for s in first["items"]] == [bob, adam]
    rest = client.get(f"/api/v1/subscribers?limit=2&cursor={first['next_cursor']}", headers=auth)
    assert [s["id"] for s in rest.get_json()["items"]] == [ada]
    assert rest.get_json()["next_cursor"] is None


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ("?status=gone", 422, "status"),
        ("?topic=news", 422, "topic"),
        ("?limit=0", 422, "limit"),
        ("?limit=201", 422, "limit"),
        ("?cursor=forged", 400, "cursor"),
    ],
)
def test_bad_list_arguments(client, auth, query, status, field) -> None:
    response = client.get(f"/api/v1/subscribers{query}", headers=auth)
    code = "validation_error" if status == 422 else "bad_request"
    assert field in assert_error(response, status, code)["errors"]


def test_get_one_subscriber(app, client, auth) -> None:
    sid = add(app, "ada@example.org", SubscriberStatus.CONFIRMED, confirmed_at=NOW)
    got = client.get(f"/api/v1/subscribers/{sid}", headers=auth)
    assert got.status_code == 200
    assert got.get_json() == {
        "id": sid,
        "email": "ada@example.org",
        "status": "confirmed",
        "topics": ["digest", "early_access"],
        "source": "web",
        "locale": "en",
        "created_at": "2026-11-25T12:00:00+00:00",
        "confirmed_at": "2026-11-25T12:00:00+00:00",
        "unsubscribed_at": None,
    }
    assert_error(client.get("/api/v1/subscribers/999", headers=auth), 404, "not_found")
    assert_error(client.get(f"/api/v1/subscribers/{2**40}", headers=auth), 404, "not_found")


def test_subscribers_need_a_token(client) -> None:
    assert_error(client.get("/api/v1/subscribers"), 401, "unauthorized")
    assert_error(client.delete("/api/v1/subscribers/1"), 401, "unauthorized")


# --- delete: erasure ----------------------------------------------------------------------------


def test_delete_erases_and_keeps_the_address_away(app, client, auth) -> None:
    subscribe(client, auth, email="ada@example.org")
    with app.app_context():
        sid = db.session.scalar(select(Subscriber.id))
    response = client.delete(f"/api/v1/subscribers/{sid}", headers=auth)
    assert response.status_code == 204 and response.get_data() == b""
    with app.app_context():
        assert db.session.get(Subscriber, sid) is None
        assert count(app, ConsentEvent) == 0
        entry = db.session.scalar(select(Suppression))
        assert entry is not None and entry.reason == SuppressionReason.ERASED
        assert entry.email_hash == email_hash("ada@example.org")
        # The confirmation that had not gone out yet never will, and names nobody.
        delivery = db.session.scalar(select(Delivery))
        assert delivery is not None and delivery.status == DeliveryStatus.SKIPPED
        assert delivery.subscriber_id is None and delivery.to_address is None

    # Asking again is answered as always, and nothing comes back.
    assert subscribe(client, auth, email="ada@example.org").status_code == 202
    assert count(app, Subscriber) == 0
    assert_error(client.delete(f"/api/v1/subscribers/{sid}", headers=auth), 404, "not_found")
