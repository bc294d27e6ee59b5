"""Early access on the web: personal /early/<token> links, the browser grant, opening counts."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from flask import Blueprint, Flask, current_app, redirect, render_template, session, url_for
from flask_babel import gettext as _
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from werkzeug.wrappers import Response

from .extensions import db
from .films import in_early_access, is_public
from .journal import enqueue_early_access
from .models import (
    Delivery,
    DeliveryKind,
    EarlyAccessOpen,
    Film,
    SubscriberStatus,
    utcnow,
)
from .tokens import InvalidToken, Purpose, subscriber_for

bp = Blueprint("early_access", __name__)

SESSION_KEY = "early_access_films"


class EarlyAccessRefused(Exception):
    """A personal early-access link that cannot open its film; ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int, film: Film | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.film = film


def open_early_access(token: str, now: datetime) -> Film:
    """The film a personal link opens, after checking subscriber, film and window."""
    try:
        subscriber, claims = subscriber_for(Purpose.EARLY_ACCESS, token)
    except InvalidToken:
        raise EarlyAccessRefused(_("This early-access link is not valid."), 404) from None
    if (
        subscriber.status != SubscriberStatus.CONFIRMED
        or not subscriber.wants_early_access
        or claims.film_id is None
    ):
        raise EarlyAccessRefused(_("This early-access link is no longer active."), 403)
    film = db.session.get(Film, claims.film_id)
    if film is None:
        raise EarlyAccessRefused(_("This early-access link is not valid."), 404)
    if is_public(film, now):
        raise EarlyAccessRefused(
            _("Early access to this film has ended: it is now open to everyone."), 410, film
        )
    if not in_early_access(film, now):
        raise EarlyAccessRefused(_("Early access to this film has not opened yet."), 403, film)
    record_open(film.id, subscriber.id, now)
    return film


def opener_hash(film_id: int, subscriber_id: int) -> str:
    """A keyed hash that counts a subscriber's opens once without recording who they are."""
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, f"{film_id}:{subscriber_id}".encode(), hashlib.sha256).hexdigest()


def record_open(film_id: int, subscriber_id: int, now: datetime) -> None:
    """Count this subscriber's first opening of the film; later ones change nothing."""
    digest = opener_hash(film_id, subscriber_id)
    exists = db.session.scalar(
        select(EarlyAccessOpen.id).where(
            EarlyAccessOpen.film_id == film_id, EarlyAccessOpen.opener_hash == digest
        )
    )
    if exists is not None:
        return
    try:
        with db.session.begin_nested():
            db.session.add(EarlyAccessOpen(film_id=film_id, opener_hash=digest, at=now))
    except IntegrityError:
        pass  # a concurrent first open counted it already


def open_counts() -> dict[int, int]:
    """How many subscribers opened each film's early-access link."""
    rows = db.session.execute(
        select(EarlyAccessOpen.film_id, func.count()).group_by(EarlyAccessOpen.film_id)
    )
    return {film_id: count for film_id, count in rows}


class AlertsNotOpen(Exception):
    """Alerts for a film outside its early-access window: nobody may be told yet (or any more)."""

    def __init__(self, film: Film) -> None:
        super().__init__(f"{film.title} is not in early access, so no alerts can go out.")
        self.film = film


def send_alerts_now(film: Film, now: datetime) -> int:
    """Queue the film's alert for every eligible subscriber not alerted yet; return how many.

    The same INSERT … SELECT as the worker's, so a subscriber is never alerted twice for a film.
    """
    if not in_early_access(film, now):
        raise AlertsNotOpen(film)
    if film.early_access_alerted_at is None:
        film.early_access_alerted_at = now  # the worker then has nothing left to do for it
    db.session.flush()
    return enqueue_early_access(film.id, now)


def alert_counts(film_id: int) -> dict[str, int]:
    """How many of a film's early-access alerts are in each delivery status."""
    rows = db.session.execute(
        select(Delivery.status, func.count())
        .where(Delivery.kind == DeliveryKind.EARLY_ACCESS, Delivery.film_id == film_id)
        .group_by(Delivery.status)
    )
    return {str(status): count for status, count in rows}


def has_grant(film: Film) -> bool:
    """Whether this browser opened a personal link for the film."""
    return film.id in session.get(SESSION_KEY, [])


def can_watch(film: Film, now: datetime) -> bool:
    """Whether this visitor may see the film's watch link now."""
    return is_public(film, now) or (in_early_access(film, now) and has_grant(film))


@bp.get("/early/<token>")
def early(token: str) -> Response | tuple[str, int]:
    """Open a personal early-access link, remember it in this browser, show the film."""
    try:
        film = open_early_access(token, utcnow())
    except EarlyAccessRefused as refused:
        db.session.rollback()
        page = render_template("early_refused.html", message=refused.message, film=refused.film)
        return page, refused.status
    db.session.commit()
    granted = set(session.get(SESSION_KEY, []))
    granted.add(film.id)
    session[SESSION_KEY] = sorted(granted)
    # Redirecting drops the token from the address bar, history and Referer.
    return redirect(url_for("pages.film", slug=film.slug))


def init_app(app: Flask) -> None:
    """Register the early-access link."""
    app.register_blueprint(bp)
