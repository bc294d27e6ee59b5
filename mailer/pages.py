"""Public pages: the landing page with the film list, film pages and the health check."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from flask import Blueprint, Flask, abort, current_app, render_template, request, session
from flask_wtf.csrf import generate_csrf
from sqlalchemy import select, text

from .early_access import can_watch
from .extensions import db
from .films import catalogue_stamp, is_public, public_films
from .models import Film, utcnow

bp = Blueprint("pages", __name__)


# Where the visitor's CSRF token goes in the kept landing page; random, so no text can hold it.
_TOKEN_SLOT = secrets.token_hex(16)


@bp.get("/")
def index() -> str:
    """The film list and the subscribe form."""
    now = utcnow()
    if "_flashes" in session:  # a message waits for this visitor: the page is theirs alone
        return render_template("index.html", films=public_films(now))
    return landing_page(now).replace(_TOKEN_SLOT, generate_csrf())


def landing_page(now: datetime) -> str:
    """The landing page as every visitor sees it but for the form's CSRF token, rendered again
    only when the catalogue changes or a new day may have released a film; otherwise one small
    query decides that the kept page is still good."""
    # The links hold the path the app is served under.
    key = (now.astimezone(UTC).date(), request.script_root, catalogue_stamp())
    kept: tuple[object, str] | None = current_app.extensions.get("mailer.landing_page")
    if kept is None or kept[0] != key:
        # The stamp is read before the films, so a change in between only costs a re-render.
        page = render_template(
            "index.html", films=public_films(now), csrf_token=lambda: _TOKEN_SLOT
        )
        kept = current_app.extensions["mailer.landing_page"] = (key, page)
    return kept[1]


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
