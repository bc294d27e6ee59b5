"""Admin early access: each film's window, alerts sent by hand once per subscriber, counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from mailer.early_access import AlertsNotOpen, alert_counts, send_alerts_now
from mailer.extensions import db
from mailer.journal import enqueue_early_access_alerts
from mailer.models import (
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Film,
    Subscriber,
    SubscriberStatus,
    SuppressionReason,
    utcnow,
)
from mailer.suppressions import suppress
from mailer.tokens import Purpose, make_token, new_nonce
from tests.conftest import admin_csrf

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def add_film(slug: str, *, now: datetime, opens_in: timedelta, release_in: timedelta) -> int:
    """A film whose early access opens ``opens_in`` after ``now``."""
    film = Film(
        slug=slug,
        title=slug.replace("-", " ").title(),
        early_access_at=now + opens_in,
        release_date=(now + release_in).date(),
        watch_url=f"https://watch.example.org/{slug}",
    )
    db.session.add(film)
    db.session.commit()
    return film.id


def add_readers(now: datetime) -> dict[str, int]:
    """Subscribers of every kind; only ``topic`` and ``topic2`` may be alerted."""
    shapes = {
        "topic": (SubscriberStatus.CONFIRMED, True),
        "topic2": (SubscriberStatus.CONFIRMED, True),
        "no-topic": (SubscriberStatus.CONFIRMED, False),
        "pending": (SubscriberStatus.PENDING, True),
        "unsubscribed": (SubscriberStatus.UNSUBSCRIBED, True),
        "suppressed": (SubscriberStatus.CONFIRMED, True),
    }
    readers = {
        name: Subscriber(
            email=f"{name}@example.org", nonce=new_nonce(), status=status, wants_early_access=topic
        )
        for name, (status, topic) in shapes.items()
    }
    db.session.add_all(readers.values())
    suppress("suppressed@example.org", SuppressionReason.HARD_BOUNCE, now)
    db.session.commit()
    return {name: reader.id for name, reader in readers.items()}


def alerted(film_id: int) -> list[int]:
    """The subscribers with an alert journalled for the film."""
    query = select(Delivery.subscriber_id).where(
        Delivery.kind == DeliveryKind.EARLY_ACCESS, Delivery.film_id == film_id
    )
    return sorted(i for i in db.session.scalars(query) if i is not None)


def test_send_alerts_now_reaches_each_eligible_subscriber_once(app) -> None:
    with app.app_context():
        film_id = add_film(
            "open-film", now=NOW, opens_in=-timedelta(minutes=5), release_in=timedelta(7)
        )
        readers = add_readers(NOW)
        film = db.session.get(Film, film_id)
        assert film is not None
        assert send_alerts_now(film, NOW) == 2
        db.session.commit()
        assert film.early_access_alerted_at is not None
        assert alerted(film_id) == sorted([readers["topic"], readers["topic2"]])
        # Pressing again, and the worker's own pass, add nobody.
        assert send_alerts_now(film, NOW) == 0
        assert enqueue_early_access_alerts(NOW) == 0
        db.session.commit()
        assert alerted(film_id) == sorted([readers["topic"], readers["topic2"]])
        assert alert_counts(film_id) == {"queued": 2}


def test_a_late_joiner_is_added_by_a_second_press(app) -> None:
    with app.app_context():
        film_id = add_film(
            "open-film", now=NOW, opens_in=-timedelta(minutes=5), release_in=timedelta(7)
        )
        readers = add_readers(NOW)
        film = db.session.get(Film, film_id)
        assert film is not None
        send_alerts_now(film, NOW)
        db.session.commit()
        late = Subscriber(
            email="late@example.org",
            nonce=new_nonce(),
            status=SubscriberStatus.CONFIRMED,
            wants_early_access=True,
        )
        db.session.add(late)
        db.session.commit()
        assert send_alerts_now(film, NOW) == 1
        db.session.commit()
        assert alerted(film_id) == sorted([readers["topic"], readers["topic2"], late.id])


def test_no_alerts_outside_the_window(app) -> None:
    with app.app_context():
        soon = add_film(
            "soon-film", now=NOW, opens_in=timedelta(days=1), release_in=timedelta(days=7)
        )
        out = add_film(
            "out-film", now=NOW, opens_in=-timedelta(days=9), release_in=-timedelta(days=1)
        )
        add_readers(NOW)
        for film_id in (soon, out):
            film = db.session.get(Film, film_id)
            assert film is not None
            try:
                send_alerts_now(film, NOW)
            except AlertsNotOpen as error:
                assert film.title in str(error)
            else:
                raise AssertionError(f"{film.slug}: alerts went out outside the window")
            db.session.rollback()
            assert alerted(film_id) == []


def test_admin_page_needs_sign_in(client) -> None:
    response = client.get("/admin/early-access")
    assert response.status_code == 302
    assert "/admin/sign-in" in response.headers["Location"]
    assert client.post("/admin/early-access/1/alerts").status_code in (302, 400)


def test_admin_sends_alerts_and_sees_counts_and_opens(app, admin_client) -> None:
    with app.app_context():
        film_id = add_film(
            "open-film", now=utcnow(), opens_in=-timedelta(minutes=5), release_in=timedelta(7)
        )
        later_id = add_film(
            "later-film", now=utcnow(), opens_in=timedelta(days=2), release_in=timedelta(9)
        )
        readers = add_readers(utcnow())
        reader = db.session.get(Subscriber, readers["topic"])
        assert reader is not None
        token = make_token(Purpose.EARLY_ACCESS, reader, film_id=film_id)
    html = admin_client.get("/admin/early-access").get_data(as_text=True)
    assert "Open Film" in html and "Later Film" in html
    assert "in early access" in html and "not open yet" in html
    assert html.count('<button type="submit">Send alerts now') == 1  # only the open film

    response = admin_client.post(
        f"/admin/early-access/{film_id}/alerts", data={"csrf_token": admin_csrf(admin_client)}
    )
    assert response.status_code == 303
    html = admin_client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Open Film: 2 alerts queued." in html
    assert "queued: 2" in html

    with app.app_context():
        first = db.session.scalars(select(Delivery).where(Delivery.film_id == film_id)).first()
        assert first is not None
        first.status = DeliveryStatus.SENT
        db.session.commit()
    app.test_client().get(f"/early/{token}")  # one subscriber opens the link, in their browser
    html = admin_client.get("/admin/early-access").get_data(as_text=True)
    assert "queued: 1, sent: 1" in html
    response = admin_client.post(
        f"/admin/early-access/{film_id}/alerts", data={"csrf_token": admin_csrf(admin_client)}
    )
    html = admin_client.get(response.headers["Location"]).get_data(as_text=True)
    assert "every eligible subscriber has this alert already" in html
    assert "<td>1</td>" in html  # subscribers who opened

    # A film whose window has not opened: a clear message, nothing queued.
    response = admin_client.post(
        f"/admin/early-access/{later_id}/alerts", data={"csrf_token": admin_csrf(admin_client)}
    )
    html = admin_client.get(response.headers["Location"]).get_data(as_text=True)
    assert "is not in early access" in html
    with app.app_context():
        assert alerted(later_id) == []
    assert (
        admin_client.post(
            "/admin/early-access/999999/alerts", data={"csrf_token": admin_csrf(admin_client)}
        ).status_code
        == 404
    )
