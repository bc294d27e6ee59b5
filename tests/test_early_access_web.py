"""Early access on the web: personal links open one film for one browser, until release."""

from datetime import timedelta

import pytest

from mailer.early_access import open_counts
from mailer.extensions import db
from mailer.models import Film, Subscriber, SubscriberStatus, utcnow
from mailer.tokens import Purpose, make_token, new_nonce

WATCH = "https://example.org/watch/secret-film"


@pytest.fixture
def setup(app):
    """A film in early access, another not yet open, and a confirmed subscriber with the topic."""
    now = utcnow()
    with app.app_context():
        early = Film(
            slug="early-film",
            title="Early Film",
            release_date=(now + timedelta(days=10)).date(),
            early_access_at=now - timedelta(hours=1),
            watch_url=WATCH,
        )
        later = Film(
            slug="later-film",
            title="Later Film",
            release_date=(now + timedelta(days=20)).date(),
            early_access_at=now + timedelta(days=5),
            watch_url="https://example.org/watch/later",
        )
        reader = Subscriber(
            email="reader@example.org",
            nonce=new_nonce(),
            status=SubscriberStatus.CONFIRMED,
            wants_early_access=True,
        )
        db.session.add_all([early, later, reader])
        db.session.commit()
        ids = {
            "early": early.id,
            "later": later.id,
            "reader": reader.id,
            "token": make_token(Purpose.EARLY_ACCESS, reader, film_id=early.id),
            "later_token": make_token(Purpose.EARLY_ACCESS, reader, film_id=later.id),
        }
    return ids


def test_anonymous_visitor_sees_coming_soon_without_watch_link(client, setup) -> None:
    html = client.get("/films/early-film").get_data(as_text=True)
    assert "Coming soon" in html
    assert WATCH not in html
    assert "Early Film" not in client.get("/").get_data(as_text=True)


def test_personal_link_opens_the_film_for_this_browser(app, client, setup) -> None:
    response = client.get(f"/early/{setup['token']}")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/films/early-film")
    html = client.get("/films/early-film").get_data(as_text=True)
    assert WATCH in html
    assert "Early access" in html
    # Another browser (no session) still sees "coming soon".
    assert WATCH not in app.test_client().get("/films/early-film").get_data(as_text=True)


def test_a_token_for_one_film_never_opens_another(client, setup) -> None:
    client.get(f"/early/{setup['token']}")
    assert "https://example.org/watch/later" not in client.get("/films/later-film").get_data(
        as_text=True
    )


def test_window_not_open_yet_is_refused(client, setup) -> None:
    response = client.get(f"/early/{setup['later_token']}")
    assert response.status_code == 403
    assert "not opened yet" in response.get_data(as_text=True)


def test_tampered_token_is_refused_with_a_clear_page(client, setup) -> None:
    response = client.get(f"/early/{setup['token']}x")
    assert response.status_code == 404
    assert "not valid" in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)


def test_wrong_purpose_token_is_refused(app, client, setup) -> None:
    with app.app_context():
        reader = db.session.get(Subscriber, setup["reader"])
        unsubscribe_token = make_token(Purpose.UNSUBSCRIBE, reader, film_id=setup["early"])
    assert client.get(f"/early/{unsubscribe_token}").status_code == 404


def test_link_dies_after_unsubscribe(app, client, setup) -> None:
    with app.app_context():
        reader = db.session.get(Subscriber, setup["reader"])
        reader.status = SubscriberStatus.UNSUBSCRIBED
        db.session.commit()
    assert client.get(f"/early/{setup['token']}").status_code == 403
    with app.app_context():
        reader = db.session.get(Subscriber, setup["reader"])
        reader.status = SubscriberStatus.CONFIRMED
        reader.nonce = new_nonce()  # what unsubscribe, erase and address change do
        db.session.commit()
    assert client.get(f"/early/{setup['token']}").status_code == 404


def test_link_ends_at_public_release(app, client, setup) -> None:
    with app.app_context():
        film = db.session.get(Film, setup["early"])
        film.release_date = utcnow().date()
        db.session.commit()
    response = client.get(f"/early/{setup['token']}")
    assert response.status_code == 410
    assert "now open to everyone" in response.get_data(as_text=True)


def test_opens_are_counted_per_subscriber_not_named(app, client, setup) -> None:
    client.get(f"/early/{setup['token']}")
    client.get(f"/early/{setup['token']}")
    app.test_client().get(f"/early/{setup['token']}")
    with app.app_context():
        assert open_counts() == {setup["early"]: 1}
