"""Digest composer domain: create, update, duplicate, and the validation errors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from mailer.digests import (
    DigestInvalid,
    DigestLocked,
    create_digest,
    duplicate_digest,
    list_digests,
    update_digest,
)
from mailer.extensions import db
from mailer.models import Digest, DigestFilm, DigestStatus, Film

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
LATER = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture
def films(app):
    """Three films; yields their ids inside an app context."""
    with app.app_context():
        rows = [Film(slug=f"film-{n}", title=f"Film {n}") for n in range(3)]
        db.session.add_all(rows)
        db.session.commit()
        yield [film.id for film in rows]


def test_create_digest_keeps_order_and_notes(films) -> None:
    a, _b, c = films
    digest = create_digest(
        "  November's films ", "Three new films", "# Hello\n\n*new*", [(c, "Watch"), (a, "")], NOW
    )
    db.session.commit()
    assert digest.status == DigestStatus.DRAFT
    assert digest.subject == "November's films"
    assert digest.created_at == NOW
    assert [(f.film_id, f.position, f.note) for f in digest.films] == [(c, 0, "Watch"), (a, 1, "")]


@pytest.mark.parametrize("subject", ["Line one\nline two", "Bcc: x\r\nSubject", "carriage\rreturn"])
def test_subject_with_a_line_break_is_refused(films, subject) -> None:
    with pytest.raises(DigestInvalid) as caught:
        create_digest(subject, "", "", [], NOW)
    assert caught.value.errors == {"subject": "must be a single line: remove the line break"}
    assert db.session.scalar(select(func.count()).select_from(Digest)) == 0


def test_every_bad_field_is_named(films) -> None:
    with pytest.raises(DigestInvalid) as caught:
        create_digest("", "pre\nheader", "ok\x00", [(films[0], "x" * 3000), (999999, "")], NOW)
    errors = caught.value.errors
    assert errors["subject"] == "is required"
    assert errors["preheader"] == "must be a single line: remove the line break"
    assert errors["intro_markdown"] == "must not contain control characters (U+0000)"
    assert errors["films"] == "refers to films that do not exist: 999999"
    assert f"note-{films[0]}" in errors


def test_the_same_film_twice_and_overlong_subject_are_refused(films) -> None:
    with pytest.raises(DigestInvalid) as caught:
        create_digest("x" * 201, "", "", [(films[0], ""), (films[0], "")], NOW)
    assert caught.value.errors == {
        "subject": "must be at most 200 characters",
        "films": "lists the same film twice",
    }


def test_update_replaces_content_and_film_order(films) -> None:
    a, b, c = films
    digest = create_digest("One", "", "", [(a, ""), (b, "")], NOW)
    db.session.commit()
    update_digest(digest, "Two", "pre", "intro", [(b, "first now"), (c, ""), (a, "")], LATER)
    db.session.commit()
    db.session.expire_all()
    stored = db.session.get(Digest, digest.id)
    assert (stored.subject, stored.preheader, stored.intro_markdown) == ("Two", "pre", "intro")
    assert [(f.film_id, f.note) for f in stored.films] == [(b, "first now"), (c, ""), (a, "")]
    assert stored.updated_at == LATER
    assert db.session.scalar(select(func.count()).select_from(DigestFilm)) == 3


def test_a_failed_update_changes_nothing(films) -> None:
    digest = create_digest("Keep", "", "", [(films[0], "")], NOW)
    db.session.commit()
    with pytest.raises(DigestInvalid):
        update_digest(digest, "Bad\nsubject", "", "", [], LATER)
    db.session.rollback()
    assert digest.subject == "Keep" and len(digest.films) == 1


@pytest.mark.parametrize(
    "status", [DigestStatus.SENDING, DigestStatus.PAUSED, DigestStatus.SENT, DigestStatus.CANCELLED]
)
def test_a_digest_that_went_out_cannot_be_changed(films, status) -> None:
    digest = create_digest("Sent", "", "", [], NOW)
    digest.status = status
    db.session.commit()
    with pytest.raises(DigestLocked):
        update_digest(digest, "Changed", "", "", [], LATER)


def test_duplicate_makes_a_new_draft_with_the_same_content(films) -> None:
    digest = create_digest("Old", "pre", "intro", [(films[1], "n1"), (films[0], "n0")], NOW)
    digest.status = DigestStatus.SENT
    digest.send_at = NOW
    db.session.commit()
    copy = duplicate_digest(digest, LATER)
    db.session.commit()
    assert copy.id != digest.id
    assert (copy.status, copy.send_at, copy.created_at) == (DigestStatus.DRAFT, None, LATER)
    assert (copy.subject, copy.preheader, copy.intro_markdown) == ("Old", "pre", "intro")
    assert [(f.film_id, f.note) for f in copy.films] == [(films[1], "n1"), (films[0], "n0")]
    assert [d.id for d in list_digests()] == [copy.id, digest.id]
