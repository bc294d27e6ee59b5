"""Admin early access: each film's window, alerts by status, opens, sending alerts by hand."""

from __future__ import annotations

from dataclasses import dataclass

from flask import flash, redirect, render_template, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response

from ..early_access import AlertsNotOpen, alert_counts, open_counts, send_alerts_now
from ..extensions import db
from ..films import in_early_access, is_public
from ..models import Film, utcnow
from .base import bp


@dataclass(frozen=True)
class FilmAccess:
    """One film's early access as the admin page shows it."""

    film: Film
    state: str  # "not open yet", "in early access" or "released"
    alerts: dict[str, int]
    opens: int

    @property
    def open_now(self) -> bool:
        """Whether alerts can be sent now."""
        return self.state == "in early access"


def _state(film: Film) -> str:
    """Where the film stands in its early-access window."""
    now = utcnow()
    if is_public(film, now):
        return "released"
    return "in early access" if in_early_access(film, now) else "not open yet"


@bp.get("/early-access")
def early_access() -> str:
    """Every film with an early-access start: window, alerts by status, subscribers who opened."""
    films = db.session.scalars(
        select(Film)
        .where(Film.early_access_at.is_not(None))
        .order_by(Film.early_access_at.desc(), Film.title)
    )
    opens = open_counts()
    rows = [
        FilmAccess(film, _state(film), alert_counts(film.id), opens.get(film.id, 0))
        for film in films
    ]
    return render_template("admin/early_access.html", rows=rows)


@bp.post("/early-access/<int:film_id>/alerts")
def early_access_send(film_id: int) -> Response:
    """Queue the film's alerts now for every eligible subscriber not alerted yet."""
    film = db.get_or_404(Film, film_id)
    try:
        added = send_alerts_now(film, utcnow())
    except AlertsNotOpen as error:
        db.session.rollback()
        flash(str(error), "error")
        return redirect(url_for("admin.early_access"), 303)
    db.session.commit()
    if added:
        flash(f"{film.title}: {added} alert{'s' if added != 1 else ''} queued.", "success")
    else:
        flash(f"{film.title}: every eligible subscriber has this alert already.", "message")
    return redirect(url_for("admin.early_access"), 303)
