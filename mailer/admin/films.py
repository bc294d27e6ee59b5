"""Admin film catalogue: list, create, edit and delete films."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response

from ..early_access import open_counts
from ..extensions import db
from ..films import FILM_FIELDS, FilmInUse, FilmInvalid, delete_film, save_film
from ..models import Film
from .base import admin_zone, bp, local_input_to_utc, utc_to_local_input


def _form_fields() -> dict[str, Any]:
    """The film fields of the posted form, with early access read in the admin's time zone."""
    raw: dict[str, Any] = {name: request.form.get(name, "") for name in FILM_FIELDS}
    raw["early_access_at"] = local_input_to_utc(raw["early_access_at"], admin_zone())
    return raw


def _form_values(film: Film | None) -> dict[str, str]:
    """What the form shows: the posted values after an error, else the stored film."""
    if request.method == "POST":
        return {name: request.form.get(name, "") for name in FILM_FIELDS}
    if film is None:
        return dict.fromkeys(FILM_FIELDS, "")
    values = {
        name: "" if getattr(film, name) is None else str(getattr(film, name))
        for name in FILM_FIELDS
    }
    values["early_access_at"] = utc_to_local_input(film.early_access_at, admin_zone())
    return values


@bp.get("/films")
def films() -> str:
    """Every film, newest release first, with how many subscribers opened its early access."""
    rows = db.session.scalars(
        select(Film).order_by(Film.release_date.desc().nulls_last(), Film.title)
    )
    return render_template("admin/films.html", films=list(rows), opens=open_counts())


@bp.route("/films/new", methods=["GET", "POST"])
def film_new() -> Response | str | tuple[str, int]:
    """Add a film."""
    return _film_form(None)


@bp.route("/films/<int:film_id>", methods=["GET", "POST"])
def film_edit(film_id: int) -> Response | str | tuple[str, int]:
    """Edit a film."""
    return _film_form(film_id)


def _film_form(film_id: int | None) -> Response | str | tuple[str, int]:
    """The film form, new (no id) or for a film; a valid post saves and goes back to the list."""
    film = db.get_or_404(Film, film_id) if film_id is not None else None
    errors: dict[str, str] = {}
    if request.method == "POST":
        try:
            saved = save_film(film, _form_fields())
        except FilmInvalid as exc:
            db.session.rollback()
            film = db.get_or_404(Film, film_id) if film_id is not None else None
            errors = exc.errors
        else:
            db.session.commit()
            flash(f"Film “{saved.title}” {'added' if film is None else 'saved'}.")
            return redirect(url_for("admin.films"))
    page = render_template(
        "admin/film_form.html", film=film, values=_form_values(film), errors=errors
    )
    return (page, 400) if errors else page


@bp.post("/films/<int:film_id>/delete")
def film_delete(film_id: int) -> Response | tuple[str, int]:
    """Delete a film, unless it has gone out in a digest."""
    film = db.get_or_404(Film, film_id)
    try:
        delete_film(film)
    except FilmInUse as exc:
        db.session.rollback()
        page = render_template("admin/film_in_use.html", film=film, digests=exc.digests)
        return page, 409
    db.session.commit()
    flash(f"Film “{film.title}” deleted.")
    return redirect(url_for("admin.films"))
