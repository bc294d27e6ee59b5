"""Unsubscribe or erase a subscriber by hand, each after a confirmation page."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from ..extensions import db
from ..models import Subscriber, SubscriberStatus, utcnow
from ..subscribers import ConsentContext, erase, unsubscribe
from .base import bp

ACTIONS = {
    "unsubscribe": "Unsubscribe",
    "erase": "Erase",
}


def admin_consent(what: str) -> ConsentContext:
    """The consent record of a change an admin made by hand: who, from where."""
    return ConsentContext(
        ip=request.remote_addr or "",
        user_agent=request.user_agent.string,
        form="admin",
        page_url=request.url,
        consent_text=f"{what} by the admin {current_user.email}",
    )


def _confirm_page(subscriber: Subscriber, action: str) -> str:
    """The page asking the admin to confirm an action."""
    return render_template(
        "admin/subscriber_confirm.html", subscriber=subscriber, action=action, label=ACTIONS[action]
    )


@bp.route("/subscribers/<int:subscriber_id>/unsubscribe", methods=["GET", "POST"])
def subscriber_unsubscribe(subscriber_id: int) -> Response | str:
    """Stop all mail to a subscriber, after confirmation; the consent history records who."""
    subscriber = db.get_or_404(Subscriber, subscriber_id)
    if request.method == "GET" or request.form.get("confirm") != "yes":
        return _confirm_page(subscriber, "unsubscribe")
    if subscriber.status == SubscriberStatus.UNSUBSCRIBED:
        flash(f"{subscriber.email} was already unsubscribed.")
    else:
        unsubscribe(subscriber, utcnow(), admin_consent("Unsubscribed"))
        db.session.commit()
        flash(f"{subscriber.email} is unsubscribed: nothing more will be sent.")
    return redirect(url_for("admin.subscriber_detail", subscriber_id=subscriber_id))


@bp.route("/subscribers/<int:subscriber_id>/erase", methods=["GET", "POST"])
def subscriber_erase(subscriber_id: int) -> Response | str:
    """Delete a subscriber's personal data, after confirmation; the address stays suppressed."""
    subscriber = db.get_or_404(Subscriber, subscriber_id)
    if request.method == "GET" or request.form.get("confirm") != "yes":
        return _confirm_page(subscriber, "erase")
    erase(subscriber, utcnow())
    db.session.commit()
    flash("The subscriber's data is erased; the address is suppressed so it is never re-added.")
    return redirect(url_for("admin.subscribers"))
