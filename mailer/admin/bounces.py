"""Admin views of bounces and complaints: the list, the raw reports, the counts per digest."""

from __future__ import annotations

from datetime import UTC, datetime, time

from flask import Response, render_template, request
from sqlalchemy import select

from ..bounces import BounceStats, bounce_stats
from ..extensions import db
from ..models import Bounce, BounceKind, Digest, DigestStatus, InboundReport
from .base import bp

PAGE_SIZE = 100
RECENT_DIGESTS = 10


@bp.app_template_global()
def digest_bounce_stats(digest_id: int) -> BounceStats:
    """One digest's bounce and complaint counts, for its dashboard."""
    return bounce_stats([digest_id])[digest_id]


@bp.app_template_global()
def recent_bounce_stats() -> list[tuple[Digest, BounceStats]]:
    """The latest sent digests' bounce and complaint rates, for the home page."""
    digests = db.session.scalars(
        select(Digest)
        .where(Digest.status.in_([DigestStatus.SENDING, DigestStatus.SENT, DigestStatus.PAUSED]))
        .order_by(Digest.started_at.desc(), Digest.id.desc())
        .limit(RECENT_DIGESTS)
    ).all()
    stats = bounce_stats([d.id for d in digests])
    return [(digest, stats[digest.id]) for digest in digests]


def _day(value: str, end: bool) -> datetime | None:
    """A YYYY-MM-DD filter as the start (or end) of that UTC day; None if blank or bad."""
    try:
        day = datetime.strptime(value.strip(), "%Y-%m-%d").date()
    except ValueError:
        return None
    return datetime.combine(day, time.max if end else time.min, tzinfo=UTC)


@bp.get("/bounces")
def bounces() -> str:
    """Bounces and complaints, newest first, filtered by kind, digest and dates."""
    kind = request.args.get("kind", "")
    digest = request.args.get("digest", "")
    since = _day(request.args.get("since", ""), end=False)
    until = _day(request.args.get("until", ""), end=True)
    query = select(Bounce).order_by(Bounce.received_at.desc(), Bounce.id.desc())
    if kind in set(BounceKind):
        query = query.where(Bounce.kind == kind)
    if digest.isdigit():
        query = query.where(Bounce.digest_id == int(digest))
    if since is not None:
        query = query.where(Bounce.received_at >= since)
    if until is not None:
        query = query.where(Bounce.received_at <= until)
    failed = db.session.scalars(
        select(InboundReport)
        .where(InboundReport.status == "failed")
        .order_by(InboundReport.id.desc())
        .limit(PAGE_SIZE)
    ).all()
    return render_template(
        "admin/bounces.html",
        bounces=db.session.scalars(query.limit(PAGE_SIZE)).all(),
        failed=failed,
        kinds=list(BounceKind),
        filters=request.args,
    )


@bp.get("/bounces/reports/<int:report_id>")
def bounce_report(report_id: int) -> Response:
    """A report exactly as it arrived, as plain text (never rendered as HTML)."""
    report = db.get_or_404(InboundReport, report_id)
    return Response(
        report.raw,
        mimetype="text/plain",
        headers={
            "Content-Security-Policy": "default-src 'none'",
            "X-Content-Type-Options": "nosniff",
        },
    )
