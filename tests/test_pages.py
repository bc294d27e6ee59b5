"""Public pages: landing page, film pages, errors, escaping."""

from datetime import date, timedelta

import pytest

from mailer.extensions import db
from mailer.films import import_films, read_film_rows
from mailer.models import Film
from mailer.paths import FILMS_FILE


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
