"""Public pages: landing page, film pages, errors, escaping."""

from datetime import UTC, date, datetime, timedelta

import pytest
from flask import render_template
from sqlalchemy import create_engine, select, update

from mailer.extensions import db
from mailer.films import delete_film, import_films, public_films, read_film_rows, save_film
from mailer.models import Film, utcnow
from mailer.pages import landing_page
from mailer.paths import FILMS_FILE
from tests.conftest import csrf_token_from


def test_landing_page_lists_every_film_with_a_link(app, client) -> None:
    with app.app_context():
        import_films(read_film_rows(FILMS_FILE))
        db.session.commit()
    html = client.get("/").get_data(as_text=True)
    assert html.count('class="film-card"') == 9
    assert html.count("A State of Mind</a>") == 1
    assert 'href="/films/camp-14-total-control-zone"' in html
    assert 'name="email"' in html


def test_film_page_renders(app, client) -> None:
    with app.app_context():
        import_films(read_film_rows(FILMS_FILE))
        db.session.commit()
    response = client.get("/films/the-red-chapel")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "<h1>The Red Chapel</h1>" in html
    assert "Mads Brügger" in html


def test_unknown_film_gets_friendly_404(client) -> None:
    response = client.get("/films/no-such-film")
    assert response.status_code == 404
    html = response.get_data(as_text=True)
    assert "We could not find that page" in html
    assert "Traceback" not in html


def test_film_text_is_escaped(app, client) -> None:
    with app.app_context():
        db.session.add(
            Film(
                slug="xss",
                title="<script>alert('t')</script>",
                director='"><img src=x onerror=alert(1)>',
                description="<b>bold</b> {{ config }}",
            )
        )
        db.session.commit()
    for url in ("/", "/films/xss"):
        html = client.get(url).get_data(as_text=True)
        assert "<script>alert" not in html
        assert "<img src=x" not in html
        assert "&lt;script&gt;" in html
        assert "SECRET_KEY" not in html


def test_unreleased_film_is_coming_soon_and_not_listed(app, client) -> None:
    with app.app_context():
        db.session.add(
            Film(
                slug="next",
                title="Next Film",
                release_date=date.today() + timedelta(days=30),
                watch_url="https://example.org/watch/next",
            )
        )
        db.session.commit()
    assert "Next Film" not in client.get("/").get_data(as_text=True)
    html = client.get("/films/next").get_data(as_text=True)
    assert "Coming soon" in html
    assert "https://example.org/watch/next" not in html


def test_wrong_method_gets_a_page_not_a_trace(client) -> None:
    response = client.delete("/")
    assert response.status_code == 405
    assert "Traceback" not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("method", "path", "data"),
    [
        ("get", "/films/a%00b", None),
        ("get", "/?q=a%00b", None),
        ("post", "/subscribe", {"email": "reader\x00@example.org"}),
    ],
)
def test_nul_bytes_get_a_friendly_400(client, method: str, path: str, data) -> None:
    """No visitor sends a NUL byte, and PostgreSQL cannot store one: refused before any query."""
    response = getattr(client, method)(path, data=data)
    assert response.status_code == 400
    assert "Traceback" not in response.get_data(as_text=True)
    assert "could not be understood" in response.get_data(as_text=True)


# --- the landing page's film list is rendered once and kept until something changes ----------


def landing_page_of(client) -> str:
    return client.get("/").get_data(as_text=True)


def test_landing_page_shows_films_saved_edited_and_deleted_after_it_was_shown(app, client) -> None:
    assert "No films yet" in landing_page_of(client)
    with app.app_context():
        save_film(None, {"title": "A New Film"})
        db.session.commit()
    assert "A New Film</a>" in landing_page_of(client)
    with app.app_context():
        film = db.session.scalar(select(Film).where(Film.slug == "a-new-film"))
        assert film is not None
        save_film(film, {"title": "A Renamed Film", "slug": "a-new-film"})
        db.session.commit()
    html = landing_page_of(client)
    assert "A Renamed Film</a>" in html and "A New Film" not in html
    with app.app_context():
        film = db.session.scalar(select(Film).where(Film.slug == "a-new-film"))
        assert film is not None
        delete_film(film)
        db.session.commit()
    assert "No films yet" in landing_page_of(client)


def test_landing_page_shows_a_change_made_by_another_process(app, client, migrated) -> None:
    with app.app_context():
        save_film(None, {"title": "Before"})
        db.session.commit()
    assert "Before</a>" in landing_page_of(client)
    # Another process: its own connection, none of this app's objects.
    other = create_engine(migrated)
    with other.begin() as connection:
        connection.execute(update(Film).values(title="Changed Elsewhere"))
    other.dispose()
    html = landing_page_of(client)
    assert "Changed Elsewhere</a>" in html and "Before" not in html


def test_film_joins_the_list_on_its_release_day_and_not_in_early_access(app) -> None:
    with app.app_context():
        db.session.add(
            Film(
                slug="soon",
                title="Soon Released",
                release_date=date(2026, 6, 1),
                early_access_at=datetime(2026, 5, 20, 9, 0, tzinfo=UTC),
            )
        )
        db.session.commit()
    last_evening = datetime(2026, 5, 31, 23, 59, 59, tzinfo=UTC)
    with app.test_request_context("/"):
        before = landing_page(last_evening)
        assert "Soon Released" not in before
        assert landing_page(last_evening) is before  # kept, not rendered again
        assert "Soon Released</a>" in landing_page(datetime(2026, 6, 1, 0, 0, tzinfo=UTC))


def test_every_visitor_gets_a_token_of_their_own_that_works(app) -> None:
    visitors = [app.test_client() for _ in range(2)]
    pages = [landing_page_of(visitor) for visitor in visitors]
    tokens = [csrf_token_from(page) for page in pages]
    assert tokens[0] != tokens[1]
    assert pages[0].replace(tokens[0], "") == pages[1].replace(tokens[1], "")
    for n, (visitor, token) in enumerate(zip(visitors, tokens, strict=True)):
        data = {"csrf_token": token, "email": f"v{n}@example.org", "topics": ["digest"]}
        assert visitor.post("/subscribe", data=data).status_code == 303


def test_kept_landing_page_is_the_page_a_fresh_render_gives(app, client) -> None:
    with app.app_context():
        import_films(read_film_rows(FILMS_FILE))
        db.session.commit()
    landing_page_of(client)
    kept = landing_page_of(client)
    token = csrf_token_from(kept)
    with app.test_request_context("/"):
        fresh = render_template(
            "index.html", films=public_films(utcnow()), csrf_token=lambda: token
        )
    assert kept == fresh


def test_a_message_waiting_for_the_visitor_is_shown_on_the_landing_page(app, client) -> None:
    landing_page_of(client)
    with client.session_transaction() as session:
        session["_flashes"] = [("message", "Your choices are saved.")]
    assert "Your choices are saved." in landing_page_of(client)
    assert "Your choices are saved." not in landing_page_of(client)
