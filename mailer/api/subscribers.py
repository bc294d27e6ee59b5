"""/api/v1/subscribers: list with filters, get, start a double opt-in, erase."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from sqlalchemy import select
from webargs.flaskparser import abort

from ..consent import consent_from_request
from ..extensions import db
from ..i18n import DEFAULT_LOCALE, SUPPORTED
from ..models import EMAIL_MAX, Subscriber, SubscriberStatus, utcnow
from ..subscriber_search import TOPICS, SubscriberFilter
from ..subscribers import InvalidAddress, InvalidTopics, Topic, erase, subscribe, topics_of
from .base import current_token, get_or_404, make_blueprint
from .pagination import Page, PageArgs, page_schema, paginate

bp = make_blueprint("subscribers", "/subscribers", "People on the list, and their consent.")

CONSENT_TEXT_MAX = 5000
PAGE_URL_MAX = 2000
ACCEPTED_MESSAGE = (
    "If this address can subscribe, a confirmation e-mail is on its way; "
    "the subscription starts when the link in it is followed."
)


class SubscriberSchema(ma.Schema):
    """A subscriber as the API shows it."""

    id = ma.fields.Integer(required=True)
    email = ma.fields.String(required=True)
    status = ma.fields.String(
        required=True, validate=ma.validate.OneOf([s.value for s in SubscriberStatus])
    )
    topics = ma.fields.List(
        ma.fields.String(validate=ma.validate.OneOf([t.value for t in Topic])),
        required=True,
        metadata={"description": "what the subscriber receives"},
    )
    source = ma.fields.String(required=True, metadata={"description": "web, import, api, ..."})
    locale = ma.fields.String(
        required=True,
        validate=ma.validate.OneOf(SUPPORTED),
        metadata={"description": "the language of the subscriber's pages and mail"},
    )
    created_at = ma.fields.AwareDateTime(required=True)
    confirmed_at = ma.fields.AwareDateTime(required=True, allow_none=True)
    unsubscribed_at = ma.fields.AwareDateTime(required=True, allow_none=True)

    @ma.pre_dump
    def _with_topics(self, subscriber: Subscriber, **kwargs: Any) -> dict[str, Any]:
        """Topics come from the subscriber's flags."""
        names = (
            "id", "email", "status", "source", "locale",
            "created_at", "confirmed_at", "unsubscribed_at",
        )  # fmt: skip
        data = {name: getattr(subscriber, name) for name in names}
        data["topics"] = [str(topic) for topic in topics_of(subscriber)]
        return data


class SubscribeSchema(ma.Schema):
    """An address to invite: it gets a confirmation e-mail and is subscribed once it confirms."""

    email = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=EMAIL_MAX))
    topics = ma.fields.List(
        ma.fields.String(validate=ma.validate.OneOf([t.value for t in Topic])),
        load_default=lambda: [t.value for t in Topic],
        metadata={"description": "what to receive; both when left out"},
    )
    consent_text = ma.fields.String(
        required=True,
        validate=ma.validate.Length(min=1, max=CONSENT_TEXT_MAX),
        metadata={"description": "the words the person agreed to, recorded verbatim"},
    )
    page_url = ma.fields.String(
        load_default="",
        validate=ma.validate.Length(max=PAGE_URL_MAX),
        metadata={"description": "where consent was given, if on a page of the site"},
    )
    locale = ma.fields.String(
        load_default=DEFAULT_LOCALE,
        validate=ma.validate.OneOf(SUPPORTED),
        metadata={"description": "the language of the subscriber's pages and mail"},
    )


class AcceptedSchema(ma.Schema):
    """The answer to a subscription request: the same for every address."""

    message = ma.fields.String(required=True)


class SubscriberListArgs(PageArgs):
    """Page arguments and optional filters."""

    status = ma.fields.String(
        load_default=None, validate=ma.validate.OneOf([s.value for s in SubscriberStatus])
    )
    topic = ma.fields.String(load_default=None, validate=ma.validate.OneOf(list(TOPICS)))
    email = ma.fields.String(
        load_default="",
        validate=ma.validate.Length(max=EMAIL_MAX),
        metadata={"description": "the start of an address, or a whole address (exact match)"},
    )


SubscriberPageSchema = page_schema(SubscriberSchema, "SubscriberPage")


@bp.route("", methods=["GET"])
@bp.arguments(SubscriberListArgs, location="query", as_kwargs=True)
@bp.response(200, SubscriberPageSchema)
def list_subscribers(
    limit: int, cursor: str | None, status: str | None, topic: str | None, email: str
) -> Page[Subscriber]:
    """List subscribers, newest first, a page at a time; filter by status, topic, address."""
    flt = SubscriberFilter(query=email.strip().lower(), status=status or "", topic=topic or "")
    return paginate(
        flt.apply(select(Subscriber)), Subscriber.id, kind="subscribers", limit=limit,
        cursor=cursor, newest_first=True,
    )  # fmt: skip


@bp.route("", methods=["POST"])
@bp.arguments(SubscribeSchema)
@bp.response(202, AcceptedSchema)
def create_subscriber(data: dict[str, Any]) -> dict[str, str]:
    """Start the double opt-in for an address; the answer never tells whether it was known."""
    consent = consent_from_request(
        f"api:{current_token().name}", data["consent_text"], page_url=data["page_url"] or None
    )
    try:
        subscribe(
            data["email"], data["topics"], consent, utcnow(),
            source="api", locale=data["locale"],
        )  # fmt: skip
    except InvalidAddress as exc:
        db.session.rollback()
        abort(422, errors={"email": [str(exc)]})
    except InvalidTopics as exc:
        db.session.rollback()
        abort(422, errors={"topics": [str(exc)]})
    db.session.commit()
    return {"message": ACCEPTED_MESSAGE}


@bp.route("/<int:subscriber_id>", methods=["GET"])
@bp.response(200, SubscriberSchema)
def get_subscriber(subscriber_id: int) -> Subscriber:
    """One subscriber."""
    return get_or_404(Subscriber, subscriber_id, "subscriber")


@bp.route("/<int:subscriber_id>", methods=["DELETE"])
@bp.response(204)
def delete_subscriber(subscriber_id: int) -> None:
    """Erase a subscriber's personal data; the address's hash stays suppressed for good."""
    erase(get_or_404(Subscriber, subscriber_id, "subscriber"), utcnow())
    db.session.commit()
