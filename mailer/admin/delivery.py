"""A digest's preview, test sends and delivery dashboard."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from sqlalchemy import func, select
from werkzeug.wrappers import Response

from ..emails import RenderedEmail, preview_digest
from ..extensions import db
from ..models import Delivery, DeliveryKind, DeliveryStatus, Digest, DigestStatus, utcnow
from ..sending import queue_message
from ..subscribers import InvalidAddress, normalise_email
from .base import bp
from .frames import IFRAME_SANDBOX, framed_html

FAILURES_SHOWN = 50
# While a digest goes out its dashboard reloads itself this often (seconds).
REFRESH_SECONDS = 5
LIVE_STATUSES = (DigestStatus.SCHEDULED, DigestStatus.SENDING)


def _digest_or_404(digest_id: int) -> Digest:
    """The digest with this id, or a 404."""
    digest = db.session.get(Digest, digest_id)
    if digest is None:
        abort(404)
    return digest


@bp.app_template_global()
def digest_preview(digest: Digest) -> RenderedEmail:
    """What a subscriber would receive if the digest went out now."""
    return preview_digest(digest, utcnow())


@bp.app_template_global()
def iframe_sandbox() -> str:
    """The sandbox attribute every mail frame carries."""
    return IFRAME_SANDBOX


@bp.app_template_global()
def delivery_counts(digest_id: int) -> dict[str, int]:
    """A digest's deliveries by status, every status listed; test sends are not counted."""
    counts = {str(status): 0 for status in DeliveryStatus}
    rows = db.session.execute(
        select(Delivery.status, func.count())
        .where(Delivery.digest_id == digest_id, Delivery.kind != DeliveryKind.TEST)
        .group_by(Delivery.status)
    )
    for status, count in rows:
        counts[status] = int(count)
    return counts


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
    return framed_html(digest_preview(_digest_or_404(digest_id)).html)


@bp.post("/digests/<int:digest_id>/test")
def digest_test_send(digest_id: int) -> Response:
    """Send a test of the digest to one address."""
    digest = _digest_or_404(digest_id)
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
    digest = _digest_or_404(digest_id)
    return render_template(
        "admin/digest_delivery.html",
        digest=digest,
        refresh=REFRESH_SECONDS if digest.status in LIVE_STATUSES else None,
    )
