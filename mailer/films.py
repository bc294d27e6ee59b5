"""The film catalogue: validating film data, the early-access window, importing from JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
from flask import Flask
from flask.cli import with_appcontext
from sqlalchemy import Row, String, bindparam, delete, select, type_coerce

from .extensions import db
from .models import Digest, DigestFilm, DigestStatus, Film
from .text_rules import line_problem, text_problem

FILM_FIELDS = (
    "slug",
    "title",
    "director",
    "description",
    "year",
    "country",
    "release_date",
    "early_access_at",
    "watch_url",
    "poster_url",
)
_TEXT_LIMITS = {"title": 200, "director": 200, "country": 100, "description": 20000}
_SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


class FilmInvalid(ValueError):
    """Film data that cannot be stored; ``errors`` maps each bad field to what is wrong."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))
        self.errors = errors


class FilmImportError(ValueError):
    """A catalogue file with bad rows; ``problems`` names each row and field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def slugify(text: str) -> str:
    """A URL-safe slug: ASCII letters and digits joined by hyphens."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:120]


def _is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _clean_text(value: Any, name: str, errors: dict[str, str], *, single_line: bool) -> str:
    text = "" if value is None else str(value).strip()
    if not single_line:
        text = text.replace("\r\n", "\n")  # as browsers send a textarea's lines
    problem = line_problem(text) if single_line else text_problem(text)
    if problem:
        errors[name] = problem
    elif len(text) > _TEXT_LIMITS.get(name, 2000):
        errors[name] = f"must be at most {_TEXT_LIMITS.get(name, 2000)} characters"
    return text


def validate_film(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Check and normalise film fields; raise FilmInvalid naming every bad field.

    Only the fields present in ``raw`` are returned, so the result can update a film in part.
    """
    errors: dict[str, str] = {}
    unknown = sorted(set(raw) - set(FILM_FIELDS))
    for name in unknown:
        errors[name] = "is not a film field"
    data: dict[str, Any] = {}
    for name in ("title", "director", "country", "description"):
        if name in raw:
            data[name] = _clean_text(raw[name], name, errors, single_line=name != "description")
    if "title" in data and not data["title"]:
        errors["title"] = "is required"
    if "slug" in raw and raw["slug"] not in (None, ""):
        slug = str(raw["slug"]).strip()
        if not _SLUG_RE.match(slug) or len(slug) > 120:
            errors["slug"] = "must be lower-case letters, digits and single hyphens"
        data["slug"] = slug
    elif data.get("title"):
        data["slug"] = slugify(data["title"])
        if not data["slug"]:
            errors["slug"] = "cannot be made from this title; give one"
    if "year" in raw:
        data["year"] = _parse_year(raw["year"], errors)
    if "release_date" in raw:
        data["release_date"] = _parse_date(raw["release_date"], "release_date", errors)
    if "early_access_at" in raw:
        data["early_access_at"] = _parse_datetime(raw["early_access_at"], errors)
    for name in ("watch_url", "poster_url"):
        if name in raw:
            url = _clean_text(raw[name], name, errors, single_line=True)
            if url and not _is_http_url(url):
                errors[name] = "must be an http or https URL"
            data[name] = url
    release, early = data.get("release_date"), data.get("early_access_at")
    if release and early and early.date() >= release:
        errors["early_access_at"] = "must be before the public release date"
    if errors:
        raise FilmInvalid(errors)
    return data


def _parse_year(value: Any, errors: dict[str, str]) -> int | None:
    if value in (None, ""):
        return None
    try:
        year = int(str(value).strip())
    except ValueError:
        errors["year"] = "must be a whole number"
        return None
    if not 1870 <= year <= 2200:
        errors["year"] = "must be between 1870 and 2200"
        return None
    return year


def _parse_date(value: Any, name: str, errors: dict[str, str]) -> date | None:
    if value in (None, ""):
        return None
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        errors[name] = "must be a date like 2026-12-31"
        return None


def _parse_datetime(value: Any, errors: dict[str, str]) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value).strip())
        except ValueError:
            errors["early_access_at"] = "must be a date and time like 2026-12-01T09:00:00Z"
            return None
    # A time given without a zone is taken as UTC.
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def is_public(film: Film, now: datetime) -> bool:
    """Whether anyone may see the film and its watch link."""
    return film.release_date is None or film.release_date <= now.astimezone(UTC).date()


def in_early_access(film: Film, now: datetime) -> bool:
    """Whether the film is between its early-access start and its public release."""
    return (
        film.early_access_at is not None
        and film.early_access_at <= now
        and not is_public(film, now)
    )


# Built once: the landing page runs it on every request, and only the day changes.
_PUBLIC_FILMS = (
    select(Film.slug, Film.title, Film.director, Film.year, Film.country, Film.description)
    .where(Film.release_date.is_(None) | (Film.release_date <= bindparam("today")))
    .order_by(Film.release_date.desc().nulls_last(), Film.title)
)


def public_films(now: datetime) -> Sequence[Row[str, str, str, int | None, str, str]]:
    """The landing page's film cards (slug, title, director, year, country, description) of the
    films released to the public, newest releases first, then by title."""
    return db.session.execute(_PUBLIC_FILMS, {"today": now.astimezone(UTC).date()}).all()


# SQLAlchemy stamps `updated_at` on every insert and update, ORM or Core alike (an edit made by
# hand in SQL that leaves it alone shows on the landing page the next day, or after a restart).
# Compared as stored, not turned into datetimes: only whether it changed matters.
_CATALOGUE_STAMP = select(Film.id, type_coerce(Film.updated_at, String)).order_by(Film.id)


def catalogue_stamp() -> tuple[Row[int, str], ...]:
    """Every film's id and time of last change: a value that differs after any film is added,
    edited or deleted, by any process on any machine (unlike the latest change alone, it does not
    need the machines' clocks to agree)."""
    # On a connection of its own: a request that needs nothing else from the database then never
    # starts a session transaction, which would cost more than this query.
    with db.engine.connect() as connection:
        return tuple(connection.execute(_CATALOGUE_STAMP))


# A film in one of these digests has been (or is being) mailed and must stay in the catalogue.
LOCKED_STATUSES = (
    DigestStatus.SCHEDULED,
    DigestStatus.SENDING,
    DigestStatus.PAUSED,
    DigestStatus.SENT,
)


class FilmInUse(Exception):
    """The film is featured in digests that are scheduled, sending or sent."""

    def __init__(self, digests: list[Digest]) -> None:
        """Keep the digests that hold the film."""
        super().__init__(", ".join(d.subject for d in digests))
        self.digests = digests


def save_film(film: Film | None, raw: dict[str, Any]) -> Film:
    """Create (film None) or update a film from form fields; raise FilmInvalid on bad input."""
    data = validate_film(raw)
    clash = db.session.scalar(
        select(Film.id).where(Film.slug == data.get("slug"), Film.id != (film.id if film else -1))
    )
    if clash is not None:
        raise FilmInvalid({"slug": "is already used by another film"})
    if film is None:
        film = Film(**data)
        db.session.add(film)
    else:
        for name, value in data.items():
            setattr(film, name, value)
    db.session.flush()
    return film


def delete_film(film: Film) -> None:
    """Remove a film and its place in draft or cancelled digests; refuse if it was mailed."""
    locked = list(
        db.session.scalars(
            select(Digest)
            .join(DigestFilm, DigestFilm.digest_id == Digest.id)
            .where(DigestFilm.film_id == film.id, Digest.status.in_(LOCKED_STATUSES))
            .order_by(Digest.id)
        )
    )
    if locked:
        raise FilmInUse(locked)
    db.session.execute(delete(DigestFilm).where(DigestFilm.film_id == film.id))
    db.session.delete(film)
    db.session.flush()


@dataclass
class ImportResult:
    """What an import did."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def read_film_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a catalogue file: a JSON list (or {"films": [...]}) or a CSV with a header."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise FilmImportError([f"{path}: cannot be read ({exc})"]) from None
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        rows: list[dict[str, Any]] = []
        for row in reader:
            if None in row:
                raise FilmImportError([f"row {len(rows) + 1}: more values than header columns"])
            rows.append({k: v for k, v in row.items() if k is not None})
        return rows
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FilmImportError([f"{path}: not valid JSON ({exc})"]) from None
    if isinstance(loaded, dict) and isinstance(loaded.get("films"), list):
        loaded = loaded["films"]
    if not isinstance(loaded, list):
        raise FilmImportError([f"{path}: expected a list of films"])
    for number, row in enumerate(loaded, start=1):
        if not isinstance(row, dict):
            raise FilmImportError([f"row {number}: expected an object with film fields"])
    return loaded


def import_films(rows: Iterable[Mapping[str, Any]]) -> ImportResult:
    """Upsert films by slug; every row is checked first and nothing is written if one is bad."""
    problems: list[str] = []
    cleaned: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for number, row in enumerate(rows, start=1):
        try:
            data = validate_film(row)
        except FilmInvalid as exc:
            problems += [f"row {number}, field {name}: {msg}" for name, msg in exc.errors.items()]
            continue
        if "title" not in data:
            problems.append(f"row {number}, field title: is required")
            continue
        if data["slug"] in seen:
            problems.append(
                f"row {number}, field slug: {data['slug']!r} repeats row {seen[data['slug']]}"
            )
            continue
        seen[data["slug"]] = number
        cleaned.append(data)
    if problems:
        raise FilmImportError(problems)

    existing = {
        film.slug: film for film in db.session.scalars(select(Film).where(Film.slug.in_(seen)))
    }
    result = ImportResult()
    for data in cleaned:
        film = existing.get(data["slug"])
        if film is None:
            db.session.add(Film(**data))
            result.created.append(data["slug"])
            continue
        changed = {k: v for k, v in data.items() if getattr(film, k) != v}
        for name, value in changed.items():
            setattr(film, name, value)
        (result.updated if changed else result.unchanged).append(data["slug"])
    db.session.flush()
    return result


@click.command("import-films")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@with_appcontext
@click.option("--if-empty", is_flag=True, help="Only import when the catalogue has no films yet.")
def import_films_command(file: Path, if_empty: bool) -> None:
    """Add or update films from a JSON or CSV file (matched by slug)."""
    if if_empty and db.session.scalar(select(Film.id).limit(1)) is not None:
        click.echo("the catalogue already has films; nothing imported")
        return
    try:
        result = import_films(read_film_rows(file))
        db.session.commit()
    except FilmImportError as exc:
        db.session.rollback()
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        raise click.ClickException(f"{file}: nothing was imported") from None
    click.echo(
        f"{len(result.created)} created, {len(result.updated)} updated, "
        f"{len(result.unchanged)} unchanged"
    )


def init_app(app: Flask) -> None:
    """Register the catalogue's commands."""
    app.cli.add_command(import_films_command)
