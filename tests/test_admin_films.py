"""Admin film catalogue: list, create, edit, delete, validation beside fields, hostile input."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import func, select

from mailer.digests import create_digest
from mailer.extensions import db
from mailer.models import Admin, Digest, DigestFilm, DigestStatus, Film
from tests.conftest import admin_csrf

HOSTILE = {
    "title": "<script>alert('t')</script>",
    "director": '"><img src=x onerror=alert(1)>',
    "description": '{{ config }} {{ 7*7 }} <a href="javascript:alert(1)">x</a>',
    "country": "{% print(config) %}",
}


def _form(client, **fields: str) -> dict[str, str]:
    data = {
        "title": "The Red Chapel",
        "slug": "",
        "director": "Mads Brügger",
        "year": "2009",
        "country": "Denmark",
        "description": "A comedy troupe visits Pyongyang.",
        "release_date": "",
        "early_access_at": "",
        "watch_url": "https://watch.example.org/red-chapel",
        "poster_url": "https://img.example.org/red-chapel.jpg",
    }
    data.update(fields)
    data["csrf_token"] = admin_csrf(client)
    return data


def _film(app, slug: str) -> Film | None:
    with app.app_context():
        film = db.session.scalar(select(Film).where(Film.slug == slug))
        if film is not None:
            db.session.expunge(film)
        return film


def test_create_film_and_see_it_listed(app, admin_client) -> None:
    response = admin_client.post("/admin/films/new", data=_form(admin_client))
    assert response.status_code == 302
    film = _film(app, "the-red-chapel")
    assert film is not None and film.year == 2009
    assert film.watch_url == "https://watch.example.org/red-chapel"
    html = admin_client.get("/admin/films").get_data(as_text=True)
    assert "The Red Chapel" in html and 'href="https://watch.example.org/red-chapel"' in html


def test_early_access_is_entered_in_the_admins_time_zone_and_stored_utc(app, admin_client) -> None:
    with app.app_context():
        db.session.scalar(select(Admin)).timezone = "Asia/Seoul"
        db.session.commit()
    data = _form(admin_client, release_date="2027-03-01", early_access_at="2027-02-20T09:00")
    assert admin_client.post("/admin/films/new", data=data).status_code == 302
    film = _film(app, "the-red-chapel")
    assert film.release_date == date(2027, 3, 1)
    assert film.early_access_at == datetime(2027, 2, 20, 0, 0, tzinfo=UTC)
    edit = admin_client.get(f"/admin/films/{film.id}").get_data(as_text=True)
    assert 'value="2027-02-20T09:00"' in edit
    assert "2027-02-20 09:00 KST" in admin_client.get("/admin/films").get_data(as_text=True)


def test_validation_errors_are_shown_beside_their_fields(app, admin_client) -> None:
    data = _form(
        admin_client,
        title="",
        year="twenty",
        watch_url="javascript:alert(1)",
        poster_url="ftp://x",
        release_date="2027-01-01",
        early_access_at="2027-02-01T10:00",
    )
    response = admin_client.post("/admin/films/new", data=data)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert 'id="e-title">Title is required' in html
    assert 'id="e-year">Year must be a whole number' in html
    assert 'id="e-watch_url">Watch URL must be an http or https URL' in html
    assert 'id="e-poster_url">Poster URL must be an http or https URL' in html
    # Without a title there is no slug, so the date check is the only other one left.
    assert 'aria-invalid="true" aria-describedby="e-title"' in html
    assert 'value="twenty"' in html  # what was typed stays in the form
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Film)) == 0


def test_early_access_must_precede_release(app, admin_client) -> None:
    data = _form(admin_client, release_date="2027-01-01", early_access_at="2027-02-01T10:00")
    response = admin_client.post("/admin/films/new", data=data)
    assert response.status_code == 400
    assert "Early access starts must be before the public release date" in response.get_data(
        as_text=True
    )


def test_slug_must_be_unique(app, admin_client) -> None:
    assert admin_client.post("/admin/films/new", data=_form(admin_client)).status_code == 302
    again = admin_client.post("/admin/films/new", data=_form(admin_client, title="Other"))
    assert again.status_code == 302  # a different title makes a different slug
    clash = admin_client.post(
        "/admin/films/new", data=_form(admin_client, title="Third", slug="the-red-chapel")
    )
    assert clash.status_code == 400
    assert "Slug is already used by another film" in clash.get_data(as_text=True)


def test_edit_film(app, admin_client) -> None:
    admin_client.post("/admin/films/new", data=_form(admin_client))
    film = _film(app, "the-red-chapel")
    page = admin_client.get(f"/admin/films/{film.id}").get_data(as_text=True)
    assert 'value="Mads Brügger"' in page
    data = _form(admin_client, slug="the-red-chapel", title="The Red Chapel (2009)", year="2010")
    assert admin_client.post(f"/admin/films/{film.id}", data=data).status_code == 302
    edited = _film(app, "the-red-chapel")
    assert (edited.title, edited.year) == ("The Red Chapel (2009)", 2010)
    bad = admin_client.post(f"/admin/films/{film.id}", data=_form(admin_client, year="1"))
    assert bad.status_code == 400
    assert _film(app, "the-red-chapel").year == 2010
    assert admin_client.get("/admin/films/999999").status_code == 404


def test_delete_film_also_takes_it_out_of_drafts(app, admin_client) -> None:
    admin_client.post("/admin/films/new", data=_form(admin_client))
    film = _film(app, "the-red-chapel")
    with app.app_context():
        create_digest("Draft", "", "", [(film.id, "note")], datetime.now(UTC))
        db.session.commit()
    response = admin_client.post(
        f"/admin/films/{film.id}/delete", data={"csrf_token": admin_csrf(admin_client)}
    )
    assert response.status_code == 302
    assert _film(app, "the-red-chapel") is None
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(DigestFilm)) == 0
        assert db.session.scalar(select(func.count()).select_from(Digest)) == 1


def test_delete_is_refused_with_an_explanation_when_the_film_went_out(app, admin_client) -> None:
    admin_client.post("/admin/films/new", data=_form(admin_client))
    film = _film(app, "the-red-chapel")
    for status in (DigestStatus.SENT, DigestStatus.SENDING):
        with app.app_context():
            digest = create_digest(f"Issue {status}", "", "", [(film.id, "")], datetime.now(UTC))
            digest.status = status
            db.session.commit()
        response = admin_client.post(
            f"/admin/films/{film.id}/delete", data={"csrf_token": admin_csrf(admin_client)}
        )
        assert response.status_code == 409
        html = response.get_data(as_text=True)
        assert "cannot be deleted" in html and f"Issue {status}" in html
        assert _film(app, "the-red-chapel") is not None


def test_hostile_film_fields_are_shown_inert(app, admin_client) -> None:
    data = _form(admin_client, slug="hostile", **HOSTILE)
    assert admin_client.post("/admin/films/new", data=data).status_code == 302
    film = _film(app, "hostile")
    assert film.title == HOSTILE["title"]  # stored as typed, escaped when shown
    for path in ("/admin/films", f"/admin/films/{film.id}"):
        html = admin_client.get(path).get_data(as_text=True)
        assert "<script>alert" not in html
        assert "<img src=x" not in html
        assert 'href="javascript:' not in html
        assert "SECRET_KEY" not in html
        assert "&lt;script&gt;" in html
    edit = admin_client.get(f"/admin/films/{film.id}").get_data(as_text=True)
    assert "{{ config }} {{ 7*7 }}" in edit  # shown as typed, never evaluated


def test_javascript_urls_are_refused_for_watch_and_poster(app, admin_client) -> None:
    for name in ("watch_url", "poster_url"):
        data = _form(admin_client, **{name: "JavaScript:alert(document.cookie)"})
        response = admin_client.post("/admin/films/new", data=data)
        assert response.status_code == 400
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Film)) == 0


def test_ids_beyond_any_row_are_a_404_before_the_database(admin_client) -> None:
    """A path id larger than PostgreSQL's integer is refused by routing, on every page."""
    for path in (
        "/admin/films/2147483648",
        "/admin/digests/99999999999/delivery",
        "/digests/2147483648",
    ):
        assert admin_client.get(path).status_code == 404
    assert admin_client.get("/admin/films/2147483647").status_code == 404  # in range, no such film
