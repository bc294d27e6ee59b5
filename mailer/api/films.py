"""/api/v1/films: list, get, create, update and delete films of the catalogue."""

from __future__ import annotations

from typing import Any, NoReturn

import marshmallow as ma
from sqlalchemy import select
from webargs.flaskparser import abort

from ..extensions import db
from ..films import FILM_FIELDS, FilmInUse, FilmInvalid, delete_film, save_film
from ..models import Film
from .base import get_or_404, make_blueprint
from .pagination import Page, PageArgs, page_schema, paginate

bp = make_blueprint("films", "/films", "The film catalogue.")


class FilmSchema(ma.Schema):
    """A film as the API shows it."""

    id = ma.fields.Integer(required=True)
    slug = ma.fields.String(required=True, metadata={"description": "used in /films/<slug>"})
    title = ma.fields.String(required=True)
    director = ma.fields.String(required=True)
    description = ma.fields.String(required=True)
    year = ma.fields.Integer(required=True, allow_none=True)
    country = ma.fields.String(required=True)
    release_date = ma.fields.Date(
        required=True, allow_none=True, metadata={"description": "public release; null = public"}
    )
    early_access_at = ma.fields.AwareDateTime(
        required=True, allow_none=True, metadata={"description": "start of early access (UTC)"}
    )
    watch_url = ma.fields.String(required=True)
    poster_url = ma.fields.String(required=True)
    created_at = ma.fields.AwareDateTime(required=True)
    updated_at = ma.fields.AwareDateTime(required=True)


class FilmInputSchema(ma.Schema):
    """Film fields a client sends; types here, every rule in films.validate_film."""

    slug = ma.fields.String(
        allow_none=True, metadata={"description": "lower-case words joined by hyphens; from title"}
    )
    title = ma.fields.String(required=True, metadata={"description": "one line, 200 at most"})
    director = ma.fields.String(allow_none=True)
    description = ma.fields.String(allow_none=True)
    year = ma.fields.Integer(strict=True, allow_none=True)
    country = ma.fields.String(allow_none=True)
    release_date = ma.fields.Date(allow_none=True)
    early_access_at = ma.fields.DateTime(
        allow_none=True, metadata={"description": "a time without a zone is taken as UTC"}
    )
    watch_url = ma.fields.String(allow_none=True, metadata={"description": "http(s) URL"})
    poster_url = ma.fields.String(allow_none=True, metadata={"description": "http(s) URL"})


class FilmPatchSchema(FilmInputSchema):
    """Film fields to change; any may be left out."""

    title = ma.fields.String(metadata={"description": "one line, 200 at most"})


FilmPageSchema = page_schema(FilmSchema, "FilmPage")


def _invalid(exc: FilmInvalid) -> NoReturn:
    """Answer 422 with the fields validate_film named."""
    db.session.rollback()
    abort(422, errors={name: [message] for name, message in exc.errors.items()})


@bp.route("", methods=["GET"])
@bp.arguments(PageArgs, location="query", as_kwargs=True)
@bp.response(200, FilmPageSchema)
def list_films(limit: int, cursor: str | None) -> Page[Film]:
    """List films, oldest first, a page at a time."""
    return paginate(select(Film), Film.id, kind="films", limit=limit, cursor=cursor)


@bp.route("", methods=["POST"])
@bp.arguments(FilmInputSchema)
@bp.response(201, FilmSchema)
def create_film(data: dict[str, Any]) -> Film:
    """Add a film to the catalogue."""
    try:
        film = save_film(None, data)
    except FilmInvalid as exc:
        _invalid(exc)
    db.session.commit()
    return film


@bp.route("/<int:film_id>", methods=["GET"])
@bp.response(200, FilmSchema)
def get_film(film_id: int) -> Film:
    """One film."""
    return get_or_404(Film, film_id, "film")


@bp.route("/<int:film_id>", methods=["PATCH"])
@bp.arguments(FilmPatchSchema)
@bp.response(200, FilmSchema)
def update_film(data: dict[str, Any], film_id: int) -> Film:
    """Change some fields of a film; fields left out keep their values."""
    film = get_or_404(Film, film_id, "film")
    # Checked as a whole, so a partial change keeps the slug and rules that span fields hold.
    merged = {**{name: getattr(film, name) for name in FILM_FIELDS}, **data}
    try:
        save_film(film, merged)
    except FilmInvalid as exc:
        _invalid(exc)
    db.session.commit()
    return film


@bp.route("/<int:film_id>", methods=["DELETE"])
@bp.response(204)
@bp.alt_response(409, response="CONFLICT")
def remove_film(film_id: int) -> None:
    """Delete a film; refused (409) once it is featured in a scheduled, sending or sent digest."""
    film = get_or_404(Film, film_id, "film")
    try:
        delete_film(film)
    except FilmInUse as exc:
        db.session.rollback()
        ids = ", ".join(str(d.id) for d in exc.digests)
        abort(
            409,
            code="film_in_use",
            message=f"The film is featured in digests that are being or have been sent: {ids}.",
        )
    db.session.commit()
