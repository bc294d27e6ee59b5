"""Public pages: the landing page with the film list, film pages and the health check."""

from __future__ import annotations

from flask import Blueprint, Flask, abort, render_template
from sqlalchemy import select, text

from .early_access import can_watch
from .extensions import db
from .films import is_public, public_films
from .models import Film, utcnow

bp = Blueprint("pages", __name__)


@bp.get("/")
def index() -> str:
    """The film list and the subscribe form."""
    return render_template("index.html", films=public_films(utcnow()))


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
