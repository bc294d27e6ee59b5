"""Public pages: the landing page with the film list, film pages and the health check."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, Flask, abort, current_app, render_template, request
from markupsafe import Markup
from sqlalchemy import select, text

from .early_access import can_watch
from .extensions import db
from .films import catalogue_stamp, is_public, public_films
from .models import Film, utcnow

bp = Blueprint("pages", __name__)


@bp.get("/")
def index() -> str:
    """The film list and the subscribe form."""
    return render_template("index.html", film_list=film_list(utcnow()))


def film_list(now: datetime) -> Markup:
    """The landing page's list of public films, rendered again only when the catalogue changes
    or a new day may have released a film; otherwise one small query decides it is still good."""
    # The film links hold the path the app is served under.
    key = (now.astimezone(UTC).date(), request.script_root, catalogue_stamp())
    cached: tuple[object, Markup] | None = current_app.extensions.get("mailer.film_list")
    if cached is None or cached[0] != key:
        # The stamp is read before the films, so a change in between only costs a re-render.
        html = Markup(render_template("_film_list.html", films=public_films(now)))
        cached = current_app.extensions["mailer.film_list"] = (key, html)
    return cached[1]


@bp.get("/films/<slug>")
def film(slug: str) -> str:
    """One film's page; before release only a browser holding early access sees the watch link."""
    found = db.session.scalar(select(Film).where(Film.slug == slug))
    if found is None:
        abort(404)
    now = utcnow()
    return render_template(
        "film.html", film=found, public=is_public(found, now), watchable=can_watch(found, now)
    )


@bp.get("/healthz")
def healthz() -> tuple[dict[str, str], int]:
    """Whether the service can reach its database."""
    try:
        db.session.execute(text("SELECT 1"))
    except Exception as exc:  # any database error means unhealthy
        db.session.rollback()
        return {"status": "error", "database": type(exc).__name__}, 503
    return {"status": "ok", "database": "ok"}, 200


def init_app(app: Flask) -> None:
    """Register the public pages."""
    app.register_blueprint(bp)
