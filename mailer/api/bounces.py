"""/api/v1/bounces: every bounce and complaint, newest first, filtered by kind and digest."""

from __future__ import annotations

import marshmallow as ma
from sqlalchemy import select
from webargs.flaskparser import abort

from ..models import Bounce, BounceKind
from ..routing import MAX_ID
from .base import make_blueprint
from .pagination import InvalidCursor, Page, PageArgs, page_schema, paginate

bp = make_blueprint("bounces", "/bounces", "Bounces and complaints, as recorded.")


class BounceSchema(ma.Schema):
    """A bounce or complaint as the API shows it."""

    id = ma.fields.Integer(required=True)
    kind = ma.fields.String(
        required=True, validate=ma.validate.OneOf([k.value for k in BounceKind])
    )
    address = ma.fields.String(required=True)
    delivery_id = ma.fields.Integer(required=True, allow_none=True)
    digest_id = ma.fields.Integer(required=True, allow_none=True)
    subscriber_id = ma.fields.Integer(required=True, allow_none=True)
    status = ma.fields.String(required=True, metadata={"description": "enhanced code, e.g. 5.1.1"})
    diagnostic = ma.fields.String(required=True)
    source = ma.fields.String(required=True)
    received_at = ma.fields.AwareDateTime(required=True)


class BounceListArgs(PageArgs):
    """Page arguments and optional filters."""

    kind = ma.fields.String(
        load_default=None, validate=ma.validate.OneOf([k.value for k in BounceKind])
    )
    digest_id = ma.fields.Integer(
        load_default=None, validate=ma.validate.Range(min=1, max=MAX_ID)
    )  # a larger id can match no row, and PostgreSQL refuses to compare with it


BouncePageSchema = page_schema(BounceSchema, "BouncePage")


@bp.route("", methods=["GET"])
@bp.arguments(BounceListArgs, location="query", as_kwargs=True)
@bp.response(200, BouncePageSchema)
def list_bounces(
    limit: int, cursor: str | None, kind: str | None, digest_id: int | None
) -> Page[Bounce]:
    """List bounces and complaints, newest first, a page at a time."""
    query = select(Bounce)
    if kind:
        query = query.where(Bounce.kind == kind)
    if digest_id is not None:
        query = query.where(Bounce.digest_id == digest_id)
    try:
        return paginate(
            query, Bounce.id, kind="bounces", limit=limit, cursor=cursor, newest_first=True
        )
    except InvalidCursor as exc:
        abort(400, message=str(exc), errors={"cursor": [str(exc)]})
