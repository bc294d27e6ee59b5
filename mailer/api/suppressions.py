"""/api/v1/suppressions: the addresses that must never be mailed; list, add, remove."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from sqlalchemy import select
from webargs.flaskparser import abort

from ..extensions import db
from ..models import EMAIL_MAX, Suppression, SuppressionReason, utcnow
from ..subscribers import InvalidAddress, normalise_email
from ..suppressions import find_suppression, suppress, unsuppress
from .base import current_token, get_or_404, make_blueprint
from .pagination import Page, PageArgs, page_schema, paginate

bp = make_blueprint("suppressions", "/suppressions", "Addresses that are never mailed.")

# Erasure is done by deleting the subscriber, which suppresses the address's hash itself.
ADDABLE_REASONS = [r.value for r in SuppressionReason if r != SuppressionReason.ERASED]
NOTE_MAX = 2000


class SuppressionSchema(ma.Schema):
    """A suppression as the API shows it."""

    id = ma.fields.Integer(required=True)
    email = ma.fields.String(
        required=True, allow_none=True, metadata={"description": "null once erased: hash only"}
    )
    email_hash = ma.fields.String(required=True, metadata={"description": "SHA-256 of address"})
    reason = ma.fields.String(
        required=True, validate=ma.validate.OneOf([r.value for r in SuppressionReason])
    )
    note = ma.fields.String(required=True)
    created_at = ma.fields.AwareDateTime(required=True)


class SuppressionInputSchema(ma.Schema):
    """An address to suppress."""

    email = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=EMAIL_MAX))
    reason = ma.fields.String(
        load_default=SuppressionReason.MANUAL.value, validate=ma.validate.OneOf(ADDABLE_REASONS)
    )
    note = ma.fields.String(load_default="", validate=ma.validate.Length(max=NOTE_MAX))


class SuppressionListArgs(PageArgs):
    """Page arguments and an optional reason filter."""

    reason = ma.fields.String(
        load_default=None, validate=ma.validate.OneOf([r.value for r in SuppressionReason])
    )


SuppressionPageSchema = page_schema(SuppressionSchema, "SuppressionPage")


@bp.route("", methods=["GET"])
@bp.arguments(SuppressionListArgs, location="query", as_kwargs=True)
@bp.response(200, SuppressionPageSchema)
def list_suppressions(limit: int, cursor: str | None, reason: str | None) -> Page[Suppression]:
    """List suppressed addresses, newest first, a page at a time."""
    query = select(Suppression)
    if reason:
        query = query.where(Suppression.reason == reason)
    return paginate(
        query, Suppression.id, kind="suppressions", limit=limit, cursor=cursor,
        newest_first=True,
    )  # fmt: skip


@bp.route("", methods=["POST"])
@bp.arguments(SuppressionInputSchema)
@bp.response(201, SuppressionSchema)
@bp.alt_response(200, schema=SuppressionSchema, description="The address was already suppressed.")
def create_suppression(data: dict[str, Any]) -> tuple[Suppression, int]:
    """Suppress an address (201); an address already suppressed is returned as it is (200)."""
    try:
        address = normalise_email(data["email"])
    except InvalidAddress as exc:
        abort(422, errors={"email": [str(exc)]})
    created = find_suppression(address) is None
    entry = suppress(
        address, SuppressionReason(data["reason"]), utcnow(), note=data["note"].strip()
    )
    db.session.commit()
    return entry, 201 if created else 200


@bp.route("/<int:suppression_id>", methods=["DELETE"])
@bp.response(204)
def delete_suppression(suppression_id: int) -> None:
    """Take an address off the suppression list."""
    entry = get_or_404(Suppression, suppression_id, "suppression")
    token = current_token()
    unsuppress(entry, "removed through the API", f"API token {token.id} ({token.name})")
    db.session.commit()
