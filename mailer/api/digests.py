"""/api/v1/digests: compose, list, read with delivery counts, send, pause, resume, cancel."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NoReturn

import marshmallow as ma
from sqlalchemy import select
from webargs.flaskparser import abort

from ..digests import (
    FILMS_MAX,
    INTRO_MAX,
    NOTE_MAX,
    PREHEADER_MAX,
    SUBJECT_MAX,
    DigestInvalid,
    DigestLocked,
    InvalidTransition,
    SendTimePassed,
    cancel_digest,
    create_digest,
    duplicate_digest,
    pause_digest,
    resume_digest,
    schedule_digest,
    update_digest,
)
from ..extensions import db
from ..journal import digest_counts
from ..models import Digest, DigestStatus, utcnow
from ..routing import MAX_ID
from .base import get_or_404, make_blueprint
from .pagination import Page, PageArgs, page_schema, paginate

bp = make_blueprint("digests", "/digests", "Newsletter issues: compose them and send them.")

PAUSE_REASON_MAX = 500
LAST_YEAR = 9998  # the last year every database and datetime arithmetic here can hold
DEFAULT_PAUSE_REASON = "paused through the API"
# What each action needs the digest to be in, for the 409's message (the engine decides).
NEEDS = {
    "scheduled": "only a draft or scheduled digest can be sent",
    "paused": "only a scheduled or sending digest can be paused",
    "resumed": "only a paused digest can be resumed",
    "cancelled": "a sent or cancelled digest cannot be cancelled",
}
# digests.validate_digest's field names, as the API's fields are called.
FIELD_NAMES = {"intro_markdown": "intro", "films": "film_ids"}


class DigestSchema(ma.Schema):
    """A digest as the API lists it."""

    id = ma.fields.Integer(required=True)
    status = ma.fields.String(
        required=True, validate=ma.validate.OneOf([s.value for s in DigestStatus])
    )
    subject = ma.fields.String(required=True)
    preheader = ma.fields.String(required=True)
    intro = ma.fields.String(
        required=True, attribute="intro_markdown", metadata={"description": "Markdown"}
    )
    film_ids = ma.fields.List(
        ma.fields.Integer(), required=True, metadata={"description": "featured, in order"}
    )
    notes = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.String(),
        required=True,
        metadata={"description": "film id to the editor's note on it (films with a note only)"},
    )
    send_at = ma.fields.AwareDateTime(
        required=True, allow_none=True, metadata={"description": "when sending starts (UTC)"}
    )
    pause_reason = ma.fields.String(required=True, metadata={"description": "why it is paused"})
    created_at = ma.fields.AwareDateTime(required=True)
    updated_at = ma.fields.AwareDateTime(required=True)
    started_at = ma.fields.AwareDateTime(required=True, allow_none=True)
    finished_at = ma.fields.AwareDateTime(required=True, allow_none=True)

    @ma.pre_dump
    def _present(self, digest: Digest, **kwargs: Any) -> dict[str, Any]:
        """Featured films as ids in order and notes by film id, and what subclasses add."""
        names = (
            "id", "status", "subject", "preheader", "intro_markdown", "send_at", "pause_reason",
            "created_at", "updated_at", "started_at", "finished_at",
        )  # fmt: skip
        data = {name: getattr(digest, name) for name in names}
        data["film_ids"] = [item.film_id for item in digest.films]
        data["notes"] = {str(item.film_id): item.note for item in digest.films if item.note}
        return {**data, **self.extra(digest)}

    def extra(self, digest: Digest) -> dict[str, Any]:
        """More fields to show; none in a list."""
        return {}


class CountsSchema(ma.Schema):
    """How many of a digest's deliveries are in each status."""

    queued = ma.fields.Integer(required=True, metadata={"description": "waiting or retrying"})
    claimed = ma.fields.Integer(required=True, metadata={"description": "being sent right now"})
    sent = ma.fields.Integer(required=True)
    failed = ma.fields.Integer(required=True, metadata={"description": "given up on"})
    skipped = ma.fields.Integer(
        required=True, metadata={"description": "not sent on purpose (unsubscribed, cancelled)"}
    )


class DigestDetailSchema(DigestSchema):
    """A digest with its deliveries counted by status."""

    counts = ma.fields.Nested(CountsSchema, required=True)

    def extra(self, digest: Digest) -> dict[str, Any]:
        """The delivery counts."""
        return {"counts": digest_counts(digest.id)}


class DigestInputSchema(ma.Schema):
    """Digest content a client sends; types here, every rule in digests.validate_digest."""

    subject = ma.fields.String(
        required=True, metadata={"description": f"one line, {SUBJECT_MAX} at most"}
    )
    preheader = ma.fields.String(
        load_default="", metadata={"description": f"inbox preview text, {PREHEADER_MAX} at most"}
    )
    intro = ma.fields.String(
        load_default="", metadata={"description": f"Markdown, {INTRO_MAX} characters at most"}
    )
    film_ids = ma.fields.List(
        ma.fields.Integer(strict=True, validate=ma.validate.Range(min=1, max=MAX_ID)),
        load_default=list,
        metadata={"description": f"films to feature, in order ({FILMS_MAX} at most)"},
    )
    notes = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.String(),
        load_default=dict,
        metadata={"description": f"film id to a note on it, {NOTE_MAX} characters at most"},
    )


class DigestPatchSchema(DigestInputSchema):
    """Digest content to change; fields left out keep their values."""

    subject = ma.fields.String(metadata={"description": f"one line, {SUBJECT_MAX} at most"})
    preheader = ma.fields.String(metadata={"description": f"{PREHEADER_MAX} at most"})
    intro = ma.fields.String(metadata={"description": f"Markdown, {INTRO_MAX} at most"})
    film_ids = ma.fields.List(
        ma.fields.Integer(strict=True, validate=ma.validate.Range(min=1, max=MAX_ID)),
        metadata={"description": "films to feature, in order; replaces the list"},
    )
    notes = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.String(),
        metadata={"description": "film id to note; replaces every note"},
    )


class SendSchema(ma.Schema):
    """When to send a digest."""

    send_at = ma.fields.AwareDateTime(
        load_default=None,
        allow_none=True,
        metadata={"description": "ISO 8601 with a zone, in the future; left out or null: now"},
    )

    @ma.post_load
    def _in_utc(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """send_at in UTC, as stored; a time that has none (year 9999 and beyond) is refused."""
        if data.get("send_at") is not None:
            try:
                data["send_at"] = data["send_at"].astimezone(UTC)
            except OverflowError:
                raise ma.ValidationError("is too far in the future", "send_at") from None
            if data["send_at"].year > LAST_YEAR:
                raise ma.ValidationError("is too far in the future", "send_at")
        return data


class PauseSchema(ma.Schema):
    """Why a digest is paused."""

    reason = ma.fields.String(
        load_default=DEFAULT_PAUSE_REASON, validate=ma.validate.Length(min=1, max=PAUSE_REASON_MAX)
    )


DigestPageSchema = page_schema(DigestSchema, "DigestPage")


def _films(film_ids: list[int], notes: dict[str, str]) -> list[tuple[int, str]]:
    """(film id, note) pairs; a note for a film that is not featured is a 422."""
    featured = {str(film_id) for film_id in film_ids}
    stray = sorted(key for key in notes if key not in featured)
    if stray:
        abort(422, errors={f"notes.{key}": ["is for a film not in film_ids"] for key in stray})
    return [(film_id, notes.get(str(film_id), "")) for film_id in film_ids]


def _invalid(exc: DigestInvalid) -> NoReturn:
    """Answer 422 with the fields validate_digest named, as the API calls them."""
    db.session.rollback()
    errors: dict[str, list[str]] = {}
    for name, message in exc.errors.items():
        if name.startswith("note-"):
            name = "notes." + name.removeprefix("note-")
        errors[FIELD_NAMES.get(name, name)] = [message]
    abort(422, errors=errors)


def _conflict(exc: Exception, code: str, message: str) -> NoReturn:
    """Answer 409: the digest is not in a status that allows this."""
    db.session.rollback()
    abort(409, code=code, message=message or str(exc))


def _not_now(exc: InvalidTransition) -> NoReturn:
    """Answer 409 for a change of status the digest cannot make."""
    _conflict(
        exc,
        "invalid_transition",
        f"Digest {exc.digest_id} is {exc.status}: {NEEDS.get(exc.action, str(exc))}.",
    )


@bp.route("", methods=["GET"])
@bp.arguments(PageArgs, location="query", as_kwargs=True)
@bp.response(200, DigestPageSchema)
def list_digests(limit: int, cursor: str | None) -> Page[Digest]:
    """List digests, newest first, a page at a time (get one for its delivery counts)."""
    return paginate(
        select(Digest), Digest.id, kind="digests", limit=limit, cursor=cursor,
        newest_first=True,
    )  # fmt: skip


@bp.route("", methods=["POST"])
@bp.arguments(DigestInputSchema)
@bp.response(201, DigestDetailSchema)
def create(data: dict[str, Any]) -> Digest:
    """Compose a new draft digest."""
    films = _films(data["film_ids"], data["notes"])
    try:
        digest = create_digest(data["subject"], data["preheader"], data["intro"], films, utcnow())
    except DigestInvalid as exc:
        _invalid(exc)
    db.session.commit()
    return digest


@bp.route("/<int:digest_id>", methods=["GET"])
@bp.response(200, DigestDetailSchema)
def get_digest(digest_id: int) -> Digest:
    """One digest, with its deliveries counted by status."""
    return get_or_404(Digest, digest_id, "digest")


@bp.route("/<int:digest_id>", methods=["PATCH"])
@bp.arguments(DigestPatchSchema)
@bp.response(200, DigestDetailSchema)
@bp.alt_response(409, response="CONFLICT")
def update(data: dict[str, Any], digest_id: int) -> Digest:
    """Change a draft (or still scheduled) digest; fields left out keep their values."""
    digest = get_or_404(Digest, digest_id, "digest", lock=True)
    film_ids = data.get("film_ids", [item.film_id for item in digest.films])
    if "notes" in data:
        notes = data["notes"]
    else:
        # Films that stay keep their notes.
        kept = set(film_ids)
        notes = {str(item.film_id): item.note for item in digest.films if item.film_id in kept}
    films = _films(film_ids, notes)
    try:
        update_digest(
            digest,
            data.get("subject", digest.subject),
            data.get("preheader", digest.preheader),
            data.get("intro", digest.intro_markdown),
            films,
            utcnow(),
        )
    except DigestInvalid as exc:
        _invalid(exc)
    except DigestLocked as exc:
        _conflict(
            exc,
            "digest_locked",
            f"Digest {digest_id} is {digest.status}: only a draft or scheduled digest can be "
            "changed; duplicate it to start a new one.",
        )
    db.session.commit()
    return digest


@bp.route("/<int:digest_id>/duplicate", methods=["POST"])
@bp.response(201, DigestDetailSchema)
def duplicate(digest_id: int) -> Digest:
    """A new draft with the same content and films as this digest."""
    copy = duplicate_digest(get_or_404(Digest, digest_id, "digest"), utcnow())
    db.session.commit()
    return copy


@bp.route("/<int:digest_id>/send", methods=["POST"])
@bp.arguments(SendSchema, required=False)
@bp.response(200, DigestDetailSchema)
@bp.alt_response(409, response="CONFLICT")
def send(data: dict[str, Any], digest_id: int) -> Digest:
    """Schedule a draft to be sent at send_at, or now; a scheduled digest is rescheduled."""
    try:
        return _change_state(
            digest_id, lambda digest, now: schedule_digest(digest, data.get("send_at"), now)
        )
    except SendTimePassed as exc:
        db.session.rollback()
        abort(422, errors={"send_at": [str(exc)]})


def _change_state(digest_id: int, change: Callable[[Digest, datetime], object]) -> Digest:
    """Apply a lifecycle change to a locked digest; an impossible one answers 409."""
    digest = get_or_404(Digest, digest_id, "digest", lock=True)
    try:
        change(digest, utcnow())
    except InvalidTransition as exc:
        _not_now(exc)
    db.session.commit()
    return digest


@bp.route("/<int:digest_id>/pause", methods=["POST"])
@bp.arguments(PauseSchema, required=False)
@bp.response(200, DigestDetailSchema)
@bp.alt_response(409, response="CONFLICT")
def pause(data: dict[str, Any], digest_id: int) -> Digest:
    """Stop a scheduled or sending digest; what is still queued waits until it is resumed."""
    reason = data.get("reason", "").strip() or DEFAULT_PAUSE_REASON
    return _change_state(digest_id, lambda digest, now: pause_digest(digest, reason, now))


@bp.route("/<int:digest_id>/resume", methods=["POST"])
@bp.response(200, DigestDetailSchema)
@bp.alt_response(409, response="CONFLICT")
def resume(digest_id: int) -> Digest:
    """Carry on with a paused digest where it stopped."""
    return _change_state(digest_id, resume_digest)


@bp.route("/<int:digest_id>/cancel", methods=["POST"])
@bp.response(200, DigestDetailSchema)
@bp.alt_response(409, response="CONFLICT")
def cancel(digest_id: int) -> Digest:
    """Cancel a digest that is not finished: what is still queued is skipped."""
    return _change_state(digest_id, cancel_digest)
