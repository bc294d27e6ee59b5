"""Admin subscribers: the searchable list, detail, CSV export, and the suppression list."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime

from flask import flash, redirect, render_template, request, stream_with_context, url_for
from flask_login import current_user
from sqlalchemy import select
from werkzeug.wrappers import Response

from ..extensions import db
from ..models import (
    ConsentEvent,
    Delivery,
    Subscriber,
    SubscriberStatus,
    Suppression,
    SuppressionReason,
    utcnow,
)
from ..subscriber_search import TOPICS, SubscriberFilter, subscriber_page, subscribers_before
from ..subscribers import InvalidAddress, normalise_email
from ..suppressions import (
    SuppressionInvalid,
    find_suppression,
    is_suppressed,
    suppress,
    unsuppress,
)
from .base import bp

PAGE_SIZE = 50
EXPORT_BATCH = 1000
EXPORT_COLUMNS = (
    "id",
    "email",
    "status",
    "wants_digest",
    "wants_early_access",
    "source",
    "created_at",
    "confirmed_at",
    "unsubscribed_at",
)
# A spreadsheet runs a cell starting with one of these as a formula.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    """A CSV cell a spreadsheet shows as text: formula-like values get a leading quote."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def export_rows(flt: SubscriberFilter) -> Iterator[str]:
    """The filtered subscribers as CSV text, a header then batches walked by id."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_COLUMNS)
    yield buffer.getvalue()
    after: int | None = None
    while True:
        batch = subscribers_before(flt, after, EXPORT_BATCH)
        if not batch:
            return
        buffer.seek(0)
        buffer.truncate()
        for subscriber in batch:
            writer.writerow([csv_cell(getattr(subscriber, c)) for c in EXPORT_COLUMNS])
        yield buffer.getvalue()
        after = batch[-1].id
        db.session.expunge_all()  # keep memory flat over a million rows


def checked_suppression(email: str, reason: str, note: str) -> tuple[str, SuppressionReason]:
    """An admin's entry for the suppression list as (address, reason); SuppressionInvalid if bad."""
    errors: dict[str, str] = {}
    try:
        address = normalise_email(email)
    except InvalidAddress as exc:
        errors["email"] = str(exc)
        address = ""
    if reason not in set(SuppressionReason):
        errors["reason"] = "must be one of " + ", ".join(SuppressionReason)
    if len(note) > 2000:
        errors["note"] = "must be at most 2000 characters"
    if address and is_suppressed(address):
        errors["email"] = "is already suppressed"
    if errors:
        raise SuppressionInvalid(errors)
    return address, SuppressionReason(reason)


def _filter_arg() -> SubscriberFilter:
    """The filter in the request's query string (unknown values are ignored)."""
    arg = request.args.get
    return SubscriberFilter.lenient(arg("q", ""), arg("status", ""), arg("topic", ""))


def _after_arg() -> int | None:
    """The keyset cursor of the request, if it is a valid id."""
    raw = request.args.get("after", "")
    return int(raw) if raw.isdigit() else None


@bp.get("/subscribers")
def subscribers() -> str:
    """Search and browse subscribers, newest first, one keyset page at a time."""
    flt = _filter_arg()
    rows, next_after = subscriber_page(flt, _after_arg())
    return render_template(
        "admin/subscribers.html",
        subscribers=rows,
        flt=flt,
        next_after=next_after,
        is_first=_after_arg() is None,
        statuses=list(SubscriberStatus),
        topics=list(TOPICS),
    )


@bp.get("/subscribers/export.csv")
def subscribers_export() -> Response:
    """The filtered subscribers as a streamed CSV file."""
    flt = _filter_arg()
    return Response(
        stream_with_context(export_rows(flt)),
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="subscribers.csv"'},
    )


@bp.get("/subscribers/<int:subscriber_id>")
def subscriber_detail(subscriber_id: int) -> str:
    """One subscriber: topics, consent history and deliveries."""
    subscriber = db.get_or_404(Subscriber, subscriber_id)
    events = db.session.scalars(
        select(ConsentEvent)
        .where(ConsentEvent.subscriber_id == subscriber.id)
        .order_by(ConsentEvent.id.desc())
    )
    deliveries = db.session.scalars(
        select(Delivery)
        .where(Delivery.subscriber_id == subscriber.id)
        .order_by(Delivery.id.desc())
        .limit(100)
    )
    suppressed = find_suppression(subscriber.email)
    return render_template(
        "admin/subscriber.html",
        subscriber=subscriber,
        events=list(events),
        deliveries=list(deliveries),
        suppressed=suppressed,
    )


@bp.get("/suppressions")
def suppressions() -> str:
    """The suppression list, newest first, one keyset page at a time."""
    return _suppressions_page({}, {}, 200)[0]


def _suppressions_page(
    errors: dict[str, str], values: dict[str, str], status: int
) -> tuple[str, int]:
    """The suppression list page, with the add form's errors and values."""
    query = select(Suppression)
    after = _after_arg()
    if after is not None:
        query = query.where(Suppression.id < after)
    rows = list(db.session.scalars(query.order_by(Suppression.id.desc()).limit(PAGE_SIZE + 1)))
    next_after = rows[PAGE_SIZE - 1].id if len(rows) > PAGE_SIZE else None
    page = render_template(
        "admin/suppressions.html",
        entries=rows[:PAGE_SIZE],
        next_after=next_after,
        is_first=after is None,
        reasons=list(SuppressionReason),
        errors=errors,
        values=values,
    )
    return page, status


@bp.post("/suppressions")
def suppression_add() -> Response | tuple[str, int]:
    """Add an address to the suppression list."""
    values = {k: request.form.get(k, "") for k in ("email", "reason", "note")}
    try:
        address, reason = checked_suppression(values["email"], values["reason"], values["note"])
        suppress(address, reason, utcnow(), note=values["note"].strip())
    except SuppressionInvalid as exc:
        db.session.rollback()
        return _suppressions_page(exc.errors, values, 400)
    db.session.commit()
    flash("Address suppressed: it will not be mailed or re-added.")
    return redirect(url_for("admin.suppressions"))


@bp.post("/suppressions/<int:entry_id>/delete")
def suppression_remove(entry_id: int) -> Response | tuple[str, int]:
    """Take an address off the suppression list, with a reason."""
    entry = db.get_or_404(Suppression, entry_id)
    try:
        unsuppress(entry, request.form.get("why", ""), current_user.email)
    except SuppressionInvalid as exc:
        db.session.rollback()
        return _suppressions_page({f"why-{entry_id}": exc.errors["why"]}, {}, 400)
    db.session.commit()
    flash("Address removed from the suppression list.")
    return redirect(url_for("admin.suppressions"))
