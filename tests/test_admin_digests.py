"""Admin digest composer pages: list, compose, edit, duplicate, hostile input."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from mailer.digests import create_digest
from mailer.extensions import db
from mailer.models import Digest, DigestStatus, Film
from tests.conftest import admin_csrf

HOSTILE_MARKDOWN = (
    "<script>alert(1)</script>\n\n[click](javascript:alert(1))\n\n"
    '<img src=x onerror="alert(2)">\n\n{{ config }} {% debug %}'
)


@pytest.fixture
def film_ids(app) -> list[int]:
    with app.app_context():
        rows = [Film(slug=f"film-{n}", title=f"Film {n}") for n in range(3)]
        db.session.add_all(rows)
        db.session.commit()
        return [film.id for film in rows]


def _only_digest(app) -> Digest:
    with app.app_context():
        digest = db.session.scalar(select(Digest))
        assert digest is not None
        digest.films  # noqa: B018 - load before leaving the session
        db.session.expunge_all()
        return digest


def test_compose_a_draft_with_ordered_films_and_notes(app, admin_client, film_ids) -> None:
    a, b, c = film_ids
    page = admin_client.get("/admin/digests/new").get_data(as_text=True)
    assert f'name="include-{a}"' in page and 'for="f-subject"' in page
    data = {
        "csrf_token": admin_csrf(admin_client),
        "subject": "This month's documentaries",
        "preheader": "Two films",
        "intro_markdown": "Hello **readers**",
        f"include-{a}": "1",
        f"position-{a}": "2",
        f"note-{a}": "Second",
        f"include-{c}": "1",
        f"position-{c}": "1",
        f"note-{c}": "First",
        f"note-{b}": "ignored: not ticked",
    }
    response = admin_client.post("/admin/digests/new", data=data)
    assert response.status_code == 302
    digest = _only_digest(app)
    assert response.headers["Location"] == f"/admin/digests/{digest.id}"
    assert digest.status == DigestStatus.DRAFT
    assert [(f.film_id, f.note) for f in digest.films] == [(c, "First"), (a, "Second")]
    listing = admin_client.get("/admin/digests").get_data(as_text=True)
    assert "This month&#39;s documentaries" in listing and "status-draft" in listing
    edit = admin_client.get(f"/admin/digests/{digest.id}").get_data(as_text=True)
    assert edit.index(f'id="include-{c}"') < edit.index(f'id="include-{a}"')
    for slot in ('id="preview"', 'id="test-send"', 'id="schedule"', 'id="delivery"'):
        assert slot in edit


def test_subject_with_a_line_break_is_refused_beside_the_field(app, admin_client, film_ids) -> None:
    data = {
        "csrf_token": admin_csrf(admin_client),
        "subject": "Hello\r\nBcc: everyone@example.org",
        "intro_markdown": "kept",
        f"include-{film_ids[0]}": "1",
    }
    response = admin_client.post("/admin/digests/new", data=data)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert 'id="e-subject">Subject must be a single line: remove the line break' in html
    assert ">kept</textarea>" in html  # the rest of the form is kept
    assert f'id="include-{film_ids[0]}" name="include-{film_ids[0]}" value="1" checked' in html
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Digest)) == 0


def test_edit_a_draft(app, admin_client, film_ids) -> None:
    with app.app_context():
        digest = create_digest("First", "", "", [(film_ids[0], "")], datetime.now(UTC))
        db.session.commit()
        digest_id = digest.id
    data = {
        "csrf_token": admin_csrf(admin_client),
        "subject": "Second",
        "preheader": "",
        "intro_markdown": "",
        f"include-{film_ids[2]}": "1",
    }
    assert admin_client.post(f"/admin/digests/{digest_id}", data=data).status_code == 302
    digest = _only_digest(app)
    assert digest.subject == "Second"
    assert [f.film_id for f in digest.films] == [film_ids[2]]
    assert admin_client.get("/admin/digests/999999").status_code == 404


def test_a_sent_digest_cannot_be_edited_but_can_be_duplicated(app, admin_client, film_ids) -> None:
    with app.app_context():
        digest = create_digest("Sent one", "", "", [(film_ids[1], "n")], datetime.now(UTC))
        digest.status = DigestStatus.SENT
        db.session.commit()
        digest_id = digest.id
    page = admin_client.get(f"/admin/digests/{digest_id}").get_data(as_text=True)
    assert len(re.findall(r"<fieldset[^>]* disabled>", page)) == 1  # the message
    for field in ("include", "position", "note"):  # the films' fields, one by one
        assert re.search(rf'id="{field}-{film_ids[1]}"[^>]* disabled>', page), field
    assert "This digest is sent" in page
    data = {"csrf_token": admin_csrf(admin_client), "subject": "Changed"}
    response = admin_client.post(f"/admin/digests/{digest_id}", data=data)
    assert response.status_code == 409
    assert "can no longer be changed" in response.get_data(as_text=True)
    copy = admin_client.post(
        f"/admin/digests/{digest_id}/duplicate", data={"csrf_token": admin_csrf(admin_client)}
    )
    assert copy.status_code == 302
    with app.app_context():
        rows = db.session.scalars(select(Digest).order_by(Digest.id)).all()
        assert [(d.subject, d.status) for d in rows] == [
            ("Sent one", DigestStatus.SENT),
            ("Sent one", DigestStatus.DRAFT),
        ]
        assert [(f.film_id, f.note) for f in rows[1].films] == [(film_ids[1], "n")]
        assert copy.headers["Location"] == f"/admin/digests/{rows[1].id}"


def test_hostile_subject_markdown_and_notes_are_stored_and_shown_inert(
    app, admin_client, film_ids
) -> None:
    data = {
        "csrf_token": admin_csrf(admin_client),
        "subject": "<script>alert('s')</script> {{ config }}",
        "preheader": '"><img src=x onerror=alert(3)>',
        "intro_markdown": HOSTILE_MARKDOWN,
        f"include-{film_ids[0]}": "1",
        f"note-{film_ids[0]}": "<a href='javascript:alert(4)'>note</a>",
    }
    assert admin_client.post("/admin/digests/new", data=data).status_code == 302
    digest = _only_digest(app)
    assert digest.intro_markdown == HOSTILE_MARKDOWN  # stored exactly, rendered only when sent
    for path in ("/admin/digests", f"/admin/digests/{digest.id}"):
        html = admin_client.get(path).get_data(as_text=True)
        assert "<script>alert" not in html
        assert "<img src=x" not in html
        assert "href='javascript:" not in html and 'href="javascript:' not in html
        assert "SECRET_KEY" not in html
        assert "&lt;script&gt;alert(&#39;s&#39;)&lt;/script&gt; {{ config }}" in html


def test_composer_without_films_points_to_the_catalogue(admin_client) -> None:
    html = admin_client.get("/admin/digests/new").get_data(as_text=True)
    assert "The catalogue is empty" in html
