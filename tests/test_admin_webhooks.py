"""Admin webhook pages: register (secret shown once), refuse bad URLs, test, disable, delete."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from mailer.extensions import db
from mailer.models import WebhookDelivery, WebhookEndpoint
from tests.conftest import admin_csrf
from tests.webhook_receiver import WebhookReceiver


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver().start()
    yield server
    server.stop()


def _register(client: FlaskClient, url: str, events: list[str], description: str = ""):
    data = {"csrf_token": admin_csrf(client), "url": url, "events": events}
    return client.post("/admin/webhooks", data={**data, "description": description})


def _count(app: Flask, model: type) -> int:
    with app.app_context():
        return int(db.session.scalar(select(func.count()).select_from(model)) or 0)


def test_registering_shows_the_secret_once(app: Flask, admin_client: FlaskClient) -> None:
    response = _register(
        admin_client, "https://cms.example.org/hooks", ["subscriber.confirmed"], "CMS sync"
    )
    assert response.status_code == 201
    page = response.get_data(as_text=True)
    match = re.search(r'<code id="new-secret">(whsec_[A-Za-z0-9+/=]+)</code>', page)
    assert match is not None
    with app.app_context():
        endpoint = db.session.scalars(select(WebhookEndpoint)).one()
        assert endpoint.secret == match.group(1)
        assert endpoint.events == ["subscriber.confirmed"]
        assert (endpoint.url, endpoint.description) == ("https://cms.example.org/hooks", "CMS sync")
    listing = admin_client.get("/admin/webhooks").get_data(as_text=True)
    detail = admin_client.get(f"/admin/webhooks/{endpoint.id}").get_data(as_text=True)
    assert "https://cms.example.org/hooks" in listing
    assert match.group(1) not in listing and match.group(1) not in detail


@pytest.mark.parametrize(
    ("url", "events", "message"),
    [
        ("ftp://files.example.org/", ["digest.sent"], "must be an http:// or https:// URL"),
        ("https://user:pw@cms.example.org/", ["digest.sent"], "must not contain a user name"),
        ("https://cms.example.org:99999/", ["digest.sent"], "is not a valid URL"),
        ("https://cms.example.org/a b", ["digest.sent"], "cannot contain spaces"),
        ("", ["digest.sent"], "is required"),
        ("https://cms.example.org/", [], "must have at least one event chosen"),
        ("https://cms.example.org/", ["everything"], "has unknown names: everything"),
        ("https://cms.example.org/" + "a" * 2000, ["digest.sent"], "is too long"),
    ],
)
def test_a_bad_endpoint_is_refused_with_a_reason_and_nothing_kept(
    app: Flask, admin_client: FlaskClient, url: str, events: list[str], message: str
) -> None:
    response = _register(admin_client, url, events)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert _count(app, WebhookEndpoint) == 0


def test_a_test_event_is_queued_not_sent_by_the_request(
    app: Flask, admin_client: FlaskClient, receiver: WebhookReceiver
) -> None:
    _register(admin_client, receiver.url, ["digest.sent"])
    with app.app_context():
        endpoint_id = db.session.scalars(select(WebhookEndpoint.id)).one()
    response = admin_client.post(
        f"/admin/webhooks/{endpoint_id}/test", data={"csrf_token": admin_csrf(admin_client)}
    )
    assert response.status_code == 302
    assert receiver.received == []
    page = admin_client.get(f"/admin/webhooks/{endpoint_id}").get_data(as_text=True)
    assert "Test event queued" in page and "webhook.test" in page and "status-queued" in page


def test_disable_enable_and_delete(app: Flask, admin_client: FlaskClient) -> None:
    _register(admin_client, "https://cms.example.org/hooks", ["digest.sent"])
    with app.app_context():
        endpoint_id = db.session.scalars(select(WebhookEndpoint.id)).one()
    base = f"/admin/webhooks/{endpoint_id}"
    admin_client.post(f"{base}/test", data={"csrf_token": admin_csrf(admin_client)})
    admin_client.post(
        f"{base}/enabled", data={"csrf_token": admin_csrf(admin_client), "enabled": "0"}
    )
    page = admin_client.get(base).get_data(as_text=True)
    assert "Endpoint disabled; 1 queued events skipped." in page and "status-skipped" in page
    refused = admin_client.post(f"{base}/test", data={"csrf_token": admin_csrf(admin_client)})
    assert refused.status_code == 302
    assert "enable it to send it a test event" in admin_client.get(base).get_data(as_text=True)
    admin_client.post(
        f"{base}/enabled", data={"csrf_token": admin_csrf(admin_client), "enabled": "1"}
    )
    assert "Endpoint enabled." in admin_client.get(base).get_data(as_text=True)
    deleted = admin_client.post(f"{base}/delete", data={"csrf_token": admin_csrf(admin_client)})
    assert deleted.status_code == 302
    assert _count(app, WebhookEndpoint) == 0 and _count(app, WebhookDelivery) == 0
    assert admin_client.get(base).status_code == 404


def test_the_pages_need_a_signed_in_admin(client: FlaskClient) -> None:
    assert client.get("/admin/webhooks").status_code == 302
