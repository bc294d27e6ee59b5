"""Late joiners: who confirms while windows are open gets those films in the welcome mail."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from mailer.emails import RenderCache, render_delivery
from mailer.extensions import db, limiter
from mailer.models import Delivery, DeliveryKind, Film, Subscriber, utcnow
from tests.conftest import csrf_token_from

OPEN_WATCH = "https://watch.example.org/open-now"
LATER_WATCH = "https://watch.example.org/opens-later"
LINK = re.compile(r"https?://[^/\s\"<>]+(/[a-z]+/[A-Za-z0-9_.\-]+)")


@pytest.fixture(autouse=True)
def fresh_limits(app: Flask):
    limiter.reset()
    yield
    limiter.reset()


@pytest.fixture
def films(app: Flask) -> None:
    """One film in early access now, one whose window opens next week, one public."""
    now = utcnow()
    with app.app_context():
        db.session.add_all(
            [
                Film(
                    slug="open-now",
                    title="Open Now",
                    early_access_at=now - timedelta(hours=1),
                    release_date=(now + timedelta(days=10)).date(),
                    watch_url=OPEN_WATCH,
                ),
                Film(
                    slug="opens-later",
                    title="Opens Later",
                    early_access_at=now + timedelta(days=7),
                    release_date=(now + timedelta(days=20)).date(),
                    watch_url=LATER_WATCH,
                ),
                Film(slug="old-film", title="Old Film", watch_url="https://watch.example.org/old"),
            ]
        )
        db.session.commit()


def last_mail(app: Flask, email: str, kind: DeliveryKind) -> str:
    """The text part of the newest journalled delivery of a kind to an address, as rendered."""
    with app.app_context():
        subscriber = db.session.scalar(select(Subscriber).where(Subscriber.email == email))
        assert subscriber is not None
        delivery = db.session.scalars(
            select(Delivery)
            .where(Delivery.subscriber_id == subscriber.id, Delivery.kind == kind)
            .order_by(Delivery.id.desc())
        ).first()
        assert delivery is not None, f"no {kind} journalled for {email}"
        message = render_delivery(delivery, subscriber, RenderCache(), utcnow())
    return message.data.decode()


def subscribe_and_confirm(client: FlaskClient, app: Flask, email: str, topics: list[str]) -> str:
    """Subscribe through the form, confirm through the mailed link; the welcome mail."""
    token = csrf_token_from(client.get("/subscribe").get_data(as_text=True))
    response = client.post(
        "/subscribe", data={"csrf_token": token, "email": email, "topics": topics}
    )
    assert response.status_code == 303
    confirm_path = next(
        path
        for path in LINK.findall(last_mail(app, email, DeliveryKind.CONFIRMATION))
        if path.startswith("/confirm/")
    )
    page = client.get(confirm_path).get_data(as_text=True)
    response = client.post(confirm_path, data={"csrf_token": csrf_token_from(page)})
    assert "You are subscribed" in response.get_data(as_text=True)
    return last_mail(app, email, DeliveryKind.WELCOME)


@pytest.mark.usefixtures("films")
def test_late_joiner_gets_open_films_with_links_that_open_them(app: Flask, client) -> None:
    welcome = subscribe_and_confirm(client, app, "late@example.org", ["digest", "early_access"])
    assert "Open Now" in welcome
    assert "Opens Later" not in welcome
    assert OPEN_WATCH not in welcome and LATER_WATCH not in welcome
    early = [path for path in LINK.findall(welcome) if path.startswith("/early/")]
    assert len(set(early)) == 1, welcome
    # The reader opens the link in a browser of their own.
    browser = app.test_client()
    response = browser.get(early[0])
    assert response.status_code == 302
    assert OPEN_WATCH in browser.get("/films/open-now").get_data(as_text=True)
    assert LATER_WATCH not in browser.get("/films/opens-later").get_data(as_text=True)
    assert OPEN_WATCH not in app.test_client().get("/films/open-now").get_data(as_text=True)


@pytest.mark.usefixtures("films")
def test_a_joiner_without_the_topic_gets_no_early_links(app: Flask, client) -> None:
    welcome = subscribe_and_confirm(client, app, "digest-only@example.org", ["digest"])
    assert "/early/" not in welcome
    assert OPEN_WATCH not in welcome


def test_with_no_window_open_the_welcome_lists_no_films(app: Flask, client) -> None:
    welcome = subscribe_and_confirm(client, app, "early@example.org", ["early_access"])
    assert "/early/" not in welcome
    assert "Welcome" in welcome
