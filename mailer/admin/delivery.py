"""A digest's preview, test sends and delivery dashboard."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from werkzeug.wrappers import Response

from ..config import mail_settings
from ..digests import (
    InvalidTransition,
    SendTimePassed,
    cancel_digest,
    pause_digest,
    resume_digest,
    schedule_digest,
)
from ..emails import RenderedEmail, UnsafeHeader, preview_digest
from ..extensions import db
from ..journal import digest_counts, queue_message
from ..models import Delivery, DeliveryKind, DeliveryStatus, Digest, DigestStatus, utcnow
from ..subscribers import InvalidAddress, normalise_email
from .base import admin_zone, bp, local_input_to_utc, utc_to_local_input
from .frames import IFRAME_SANDBOX, framed_html

FAILURES_SHOWN = 50
# While a digest goes out its dashboard reloads itself this often (seconds).
REFRESH_SECONDS = 5
LIVE_STATUSES = (DigestStatus.SCHEDULED, DigestStatus.SENDING)
PAUSE_REASON_MAX = 500
NO_PREVIEW = "This digest cannot be sent as it is: correct the fields marked on its page."


class ScheduleInvalid(ValueError):
    """A send time or action the admin entered that cannot be used; the message says why."""


@bp.app_template_global()
def digest_preview(digest: Digest) -> RenderedEmail | None:
    """What a subscriber would receive if the digest went out now; None if it cannot be built
    (content stored before a rule refused it, which the page marks beside its field)."""
    try:
        return preview_digest(digest, utcnow(), mail_settings())
    except UnsafeHeader:
        return None


@bp.app_template_global()
def iframe_sandbox() -> str:
    """The sandbox attribute every mail frame carries."""
    return IFRAME_SANDBOX


@bp.app_template_global()
def delivery_counts(digest_id: int) -> dict[str, int]:
    """A digest's deliveries by status, every status listed; test sends are not counted."""
    return digest_counts(digest_id)


@bp.app_template_global()
def delivery_failures(digest_id: int, limit: int = FAILURES_SHOWN) -> list[Delivery]:
    """The latest failed deliveries of a digest, with their reasons."""
    return list(
        db.session.scalars(
            select(Delivery)
            .where(
                Delivery.digest_id == digest_id,
                Delivery.kind != DeliveryKind.TEST,
                Delivery.status == DeliveryStatus.FAILED,
            )
            .order_by(Delivery.id.desc())
            .limit(limit)
        )
    )


@bp.app_template_global()
def test_sends(digest_id: int, limit: int = 10) -> list[Delivery]:
    """The latest test sends of a digest."""
    return list(
        db.session.scalars(
            select(Delivery)
            .where(Delivery.digest_id == digest_id, Delivery.kind == DeliveryKind.TEST)
            .order_by(Delivery.id.desc())
            .limit(limit)
        )
    )


def queue_test(digest: Digest, address: str) -> Delivery:
    """Queue a test send of the digest to any address (it is not counted in statistics)."""
    to = normalise_email(address)
    return queue_message(DeliveryKind.TEST, None, utcnow(), to_address=to, digest_id=digest.id)


@bp.get("/digests/<int:digest_id>/preview.html")
def digest_preview_frame(digest_id: int) -> Response:
    """The preview's HTML part, alone, for the sandboxed frame on the digest page."""
    preview = digest_preview(db.get_or_404(Digest, digest_id))
    return framed_html(preview.html if preview else f"<p>{NO_PREVIEW}</p>")


@bp.post("/digests/<int:digest_id>/test")
def digest_test_send(digest_id: int) -> Response:
    """Send a test of the digest to one address."""
    digest = db.get_or_404(Digest, digest_id)
    try:
        delivery = queue_test(digest, request.form.get("to", ""))
    except InvalidAddress as exc:
        db.session.rollback()
        flash(f"No test sent: {exc}", "error")
        return redirect(url_for("admin.digest_edit", digest_id=digest_id, _anchor="test-send"))
    db.session.commit()
    flash(f"A test is on its way to {delivery.to_address}; its subject starts with [TEST].")
    return redirect(url_for("admin.digest_edit", digest_id=digest_id, _anchor="test-send"))


@bp.get("/digests/<int:digest_id>/delivery")
def digest_delivery(digest_id: int) -> str:
    """The delivery dashboard: counts, progress, failures; reloads itself while it sends."""
    digest = db.get_or_404(Digest, digest_id)
    return render_template(
        "admin/digest_delivery.html",
        digest=digest,
        refresh=REFRESH_SECONDS if digest.status in LIVE_STATUSES else None,
    )


@bp.app_template_global()
def schedule_input(digest: Digest) -> str:
    """The digest's send time as a datetime-local value in the admin's time zone."""
    return utc_to_local_input(digest.send_at, admin_zone())


@bp.app_template_global()
def admin_zone_name() -> str:
    """The admin's time zone name, shown beside times they type."""
    return str(admin_zone())


def send_time(value: str, now: datetime) -> datetime:
    """A send time typed in the admin's time zone, as aware UTC (schedule_digest checks it)."""
    parsed = local_input_to_utc(value, admin_zone())
    if isinstance(parsed, str):
        raise ScheduleInvalid(
            "Enter the date and time to send, e.g. 2026-12-01T09:00."
            if not parsed
            else f"“{parsed[:40]}” is not a date and time."
        )
    return parsed


def _back(digest_id: int) -> Response:
    """Back to the digest's schedule section."""
    return redirect(url_for("admin.digest_edit", digest_id=digest_id, _anchor="schedule"))


T = TypeVar("T")


def _change_state(
    digest: Digest, change: Callable[[Digest, datetime], T], not_done: str, done: Callable[[T], str]
) -> Response:
    """Apply a lifecycle change; an impossible one is undone and explained, as `not_done: why`."""
    try:
        result = change(digest, utcnow())
    except InvalidTransition as exc:
        return _refused(digest.id, f"{not_done}: {exc}")
    db.session.commit()
    flash(done(result))
    return _back(digest.id)


def _refused(digest_id: int, message: str) -> Response:
    """Undo the attempt and say why it was refused."""
    db.session.rollback()
    flash(message, "error")
    return _back(digest_id)


@bp.post("/digests/<int:digest_id>/schedule")
def digest_schedule(digest_id: int) -> Response:
    """Schedule the digest for a time in the admin's zone, or send it now."""
    digest = db.get_or_404(Digest, digest_id)
    now = utcnow()
    try:
        when = (
            None
            if request.form.get("when") == "now"
            else send_time(request.form.get("send_at", ""), now)
        )
        schedule_digest(digest, when, now)
    except (ScheduleInvalid, SendTimePassed, InvalidTransition) as exc:
        return _refused(digest_id, f"Not scheduled: {exc}")
    db.session.commit()
    if when is None:
        flash("The digest is going out now.")
    else:
        flash(
            f"Scheduled for {utc_to_local_input(when, admin_zone()).replace('T', ' ')} "
            f"({admin_zone_name()})."
        )
    return redirect(url_for("admin.digest_delivery", digest_id=digest_id))


@bp.post("/digests/<int:digest_id>/pause")
def digest_pause(digest_id: int) -> Response:
    """Pause a scheduled or sending digest, with a reason shown on its dashboard."""
    digest = db.get_or_404(Digest, digest_id)
    reason = " ".join(request.form.get("reason", "").split())[:PAUSE_REASON_MAX]
    reason = reason or f"paused by {current_user.email}"
    return _change_state(
        digest,
        lambda digest, now: pause_digest(digest, reason, now),
        "Not paused",
        lambda _: "Paused: nothing more goes out until you resume it.",
    )


@bp.post("/digests/<int:digest_id>/resume")
def digest_resume(digest_id: int) -> Response:
    """Carry on with a paused digest."""
    digest = db.get_or_404(Digest, digest_id)
    return _change_state(digest, resume_digest, "Not resumed", lambda _: "Resumed.")


@bp.post("/digests/<int:digest_id>/cancel")
def digest_cancel(digest_id: int) -> Response:
    """Cancel a digest that has not finished, once the admin has ticked the confirmation."""
    digest = db.get_or_404(Digest, digest_id)
    if request.form.get("confirm") != "yes":
        return _refused(digest_id, "Not cancelled: tick the box to confirm.")
    return _change_state(
        digest,
        cancel_digest,
        "Not cancelled",
        lambda skipped: f"Cancelled; {skipped} queued messages will not be sent.",
    )
