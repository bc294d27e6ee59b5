"""Composing digests: drafts with a subject, preheader, Markdown intro and featured films."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select

from .extensions import db
from .models import Digest, DigestFilm, DigestStatus, Film
from .text_rules import line_problem, text_problem

SUBJECT_MAX = 200
PREHEADER_MAX = 200
INTRO_MAX = 50_000
NOTE_MAX = 2_000
FILMS_MAX = 50
# Content can change until the digest starts going out; after that it is what was mailed.
EDITABLE_STATUSES = (DigestStatus.DRAFT, DigestStatus.SCHEDULED)


class DigestInvalid(ValueError):
    """Digest content that cannot be stored; ``errors`` maps each bad field to what is wrong."""

    def __init__(self, errors: dict[str, str]) -> None:
        """Keep the field errors."""
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))
        self.errors = errors


class DigestLocked(Exception):
    """The digest is sending or sent (or cancelled) and its content can no longer change."""


def _single_line(value: str, name: str, limit: int, errors: dict[str, str]) -> str:
    """A one-line header-safe field, trimmed; a line break or control character is an error."""
    text = value.strip()
    problem = line_problem(text)
    if problem:
        errors[name] = problem
    elif len(text) > limit:
        errors[name] = f"must be at most {limit} characters"
    return text


def validate_digest(
    subject: str, preheader: str, intro_markdown: str, films: Sequence[tuple[int, str]]
) -> tuple[str, str, str, list[tuple[int, str]]]:
    """Check and normalise digest content; raise DigestInvalid naming every bad field."""
    errors: dict[str, str] = {}
    subject = _single_line(subject, "subject", SUBJECT_MAX, errors)
    if not subject and "subject" not in errors:
        errors["subject"] = "is required"
    preheader = _single_line(preheader, "preheader", PREHEADER_MAX, errors)
    intro = intro_markdown.replace("\r\n", "\n").strip()
    problem = text_problem(intro)
    if problem:
        errors["intro_markdown"] = problem
    elif len(intro) > INTRO_MAX:
        errors["intro_markdown"] = f"must be at most {INTRO_MAX} characters"
    chosen: list[tuple[int, str]] = []
    ids = [film_id for film_id, _ in films]
    if len(ids) != len(set(ids)):
        errors["films"] = "lists the same film twice"
    elif len(ids) > FILMS_MAX:
        errors["films"] = f"can feature at most {FILMS_MAX} films"
    else:
        known = set(db.session.scalars(select(Film.id).where(Film.id.in_(ids)))) if ids else set()
        missing = [str(i) for i in ids if i not in known]
        if missing:
            errors["films"] = f"refers to films that do not exist: {', '.join(missing)}"
    for film_id, note in films:
        text = note.replace("\r\n", "\n").strip()
        if text_problem(text) or len(text) > NOTE_MAX:
            errors[f"note-{film_id}"] = (
                f"must be at most {NOTE_MAX} characters, without control characters"
            )
        chosen.append((film_id, text))
    if errors:
        raise DigestInvalid(errors)
    return subject, preheader, intro, chosen


def _set_content(
    digest: Digest,
    subject: str,
    preheader: str,
    intro_markdown: str,
    films: Sequence[tuple[int, str]],
    now: datetime,
) -> None:
    """Validate and write the content of a digest, replacing its films in the given order."""
    subject, preheader, intro, chosen = validate_digest(subject, preheader, intro_markdown, films)
    digest.subject, digest.preheader, digest.intro_markdown = subject, preheader, intro
    digest.updated_at = now
    digest.films.clear()
    db.session.flush()  # the old rows go before new ones with the same keys arrive
    for position, (film_id, note) in enumerate(chosen):
        digest.films.append(DigestFilm(film_id=film_id, position=position, note=note))


def create_digest(
    subject: str,
    preheader: str,
    intro_markdown: str,
    films: Sequence[tuple[int, str]],
    now: datetime,
) -> Digest:
    """A new draft digest; ``films`` are (film id, note) in the order they appear."""
    digest = Digest(status=DigestStatus.DRAFT, created_at=now, subject="")
    _set_content(digest, subject, preheader, intro_markdown, films, now)
    db.session.add(digest)
    db.session.flush()
    return digest


def update_digest(
    digest: Digest,
    subject: str,
    preheader: str,
    intro_markdown: str,
    films: Sequence[tuple[int, str]],
    now: datetime,
) -> Digest:
    """Replace a draft's (or scheduled digest's) content; raise DigestLocked once it is sending."""
    if digest.status not in EDITABLE_STATUSES:
        raise DigestLocked(f"a {digest.status} digest can no longer be changed; duplicate it")
    _set_content(digest, subject, preheader, intro_markdown, films, now)
    db.session.flush()
    return digest


def duplicate_digest(digest: Digest, now: datetime) -> Digest:
    """A new draft with the same content and films as ``digest`` (of any status)."""
    copy = Digest(
        status=DigestStatus.DRAFT,
        subject=digest.subject,
        preheader=digest.preheader,
        intro_markdown=digest.intro_markdown,
        created_at=now,
        updated_at=now,
    )
    copy.films = [
        DigestFilm(film_id=item.film_id, position=item.position, note=item.note)
        for item in digest.films
    ]
    db.session.add(copy)
    db.session.flush()
    return copy


def list_digests(limit: int = 200) -> list[Digest]:
    """The most recent digests, newest first."""
    return list(db.session.scalars(select(Digest).order_by(Digest.id.desc()).limit(limit)))
