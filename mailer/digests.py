"""A digest's life: compose, validate, schedule, pause, resume, cancel, start and finish it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import exists, or_, select, update
from sqlalchemy.exc import IntegrityError

from . import webhooks
from .extensions import db
from .journal import OPEN_STATUSES, digest_counts, enqueue_digest, skip_pending_of_digest
from .models import (
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Digest,
    DigestFilm,
    DigestStatus,
    Film,
)
from .text_rules import line_problem, text_problem

log = logging.getLogger("mailer.digests")

SUBJECT_MAX = 200
PREHEADER_MAX = 200
INTRO_MAX = 50_000
NOTE_MAX = 2_000
FILMS_MAX = 50
# Content can change until the digest starts going out; after that it is what was mailed.
EDITABLE_STATUSES = (DigestStatus.DRAFT, DigestStatus.SCHEDULED)


class DigestInvalid(ValueError):
    """Digest content that cannot be stored; ``errors`` maps each bad field to what is wrong."""

    def __init__(self, errors: dict[str, str]) -> None:
        """Keep the field errors."""
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))
        self.errors = errors


class DigestLocked(Exception):
    """The digest is sending or sent (or cancelled) and its content can no longer change."""


class InvalidTransition(Exception):
    """A digest cannot move from its current status to the one asked for."""

    def __init__(self, digest: Digest, action: str) -> None:
        super().__init__(f"digest {digest.id} is {digest.status}; it cannot be {action}")
        self.digest_id = digest.id
        self.status = digest.status
        self.action = action


class SendTimePassed(ValueError):
    """A digest cannot be scheduled for a time that has already passed."""

    def __init__(self) -> None:
        super().__init__("That time has passed: choose a later one, or send now.")


def _single_line(value: str, name: str, limit: int, errors: dict[str, str]) -> str:
    """A one-line header-safe field, trimmed; a line break or control character is an error."""
    text = value.strip()
    problem = line_problem(text)
    if problem:
        errors[name] = problem
    elif len(text) > limit:
        errors[name] = f"must be at most {limit} characters"
    return text


def validate_digest(
    subject: str, preheader: str, intro_markdown: str, films: Sequence[tuple[int, str]]
) -> tuple[str, str, str, list[tuple[int, str]]]:
    """Check and normalise digest content; raise DigestInvalid naming every bad field."""
    errors: dict[str, str] = {}
    subject = _single_line(subject, "subject", SUBJECT_MAX, errors)
    if not subject and "subject" not in errors:
        errors["subject"] = "is required"
    preheader = _single_line(preheader, "preheader", PREHEADER_MAX, errors)
    intro = intro_markdown.replace("\r\n", "\n").strip()
    problem = text_problem(intro)
    if problem:
        errors["intro_markdown"] = problem
    elif len(intro) > INTRO_MAX:
        errors["intro_markdown"] = f"must be at most {INTRO_MAX} characters"
    chosen: list[tuple[int, str]] = []
    ids = [film_id for film_id, _ in films]
    if len(ids) != len(set(ids)):
        errors["films"] = "lists the same film twice"
    elif len(ids) > FILMS_MAX:
        errors["films"] = f"can feature at most {FILMS_MAX} films"
    else:
        known = set(db.session.scalars(select(Film.id).where(Film.id.in_(ids)))) if ids else set()
        missing = [str(i) for i in ids if i not in known]
        if missing:
            errors["films"] = f"refers to films that do not exist: {', '.join(missing)}"
    for film_id, note in films:
        text = note.replace("\r\n", "\n").strip()
        if text_problem(text) or len(text) > NOTE_MAX:
            errors[f"note-{film_id}"] = (
                f"must be at most {NOTE_MAX} characters, without control characters"
            )
        chosen.append((film_id, text))
    if errors:
        raise DigestInvalid(errors)
    return subject, preheader, intro, chosen


def _set_content(
    digest: Digest,
    subject: str,
    preheader: str,
    intro_markdown: str,
    films: Sequence[tuple[int, str]],
    now: datetime,
) -> None:
    """Validate and write the content of a digest, replacing its films in the given order."""
    subject, preheader, intro, chosen = validate_digest(subject, preheader, intro_markdown, films)
    digest.subject, digest.preheader, digest.intro_markdown = subject, preheader, intro
    digest.updated_at = now
    digest.films.clear()
    db.session.flush()  # the old rows go before new ones with the same keys arrive
    for position, (film_id, note) in enumerate(chosen):
        digest.films.append(DigestFilm(film_id=film_id, position=position, note=note))


def create_digest(
    subject: str,
    preheader: str,
    intro_markdown: str,
    films: Sequence[tuple[int, str]],
    now: datetime,
) -> Digest:
    """A new draft digest; ``films`` are (film id, note) in the order they appear."""
    digest = Digest(status=DigestStatus.DRAFT, created_at=now, subject="")
    _set_content(digest, subject, preheader, intro_markdown, films, now)
    db.session.add(digest)
    db.session.flush()
    return digest


def update_digest(
    digest: Digest,
    subject: str,
    preheader: str,
    intro_markdown: str,
    films: Sequence[tuple[int, str]],
    now: datetime,
) -> Digest:
    """Replace a draft's (or scheduled digest's) content; raise DigestLocked once it is sending."""
    if digest.status not in EDITABLE_STATUSES:
        raise DigestLocked(f"a {digest.status} digest can no longer be changed; duplicate it")
    _set_content(digest, subject, preheader, intro_markdown, films, now)
    db.session.flush()
    return digest


def duplicate_digest(digest: Digest, now: datetime) -> Digest:
    """A new draft with the same content and films as ``digest`` (of any status)."""
    copy = Digest(
        status=DigestStatus.DRAFT,
        subject=digest.subject,
        preheader=digest.preheader,
        intro_markdown=digest.intro_markdown,
        created_at=now,
        updated_at=now,
    )
    copy.films = [
        DigestFilm(film_id=item.film_id, position=item.position, note=item.note)
        for item in digest.films
    ]
    db.session.add(copy)
    db.session.flush()
    return copy


def list_digests(limit: int = 200) -> list[Digest]:
    """The most recent digests, newest first."""
    return list(db.session.scalars(select(Digest).order_by(Digest.id.desc()).limit(limit)))


# --- digest lifecycle ---------------------------------------------------------------------------


def _move(digest: Digest, new: DigestStatus, now: datetime, note: str = "") -> None:
    """Change a digest's status and say so in the log."""
    old = digest.status
    digest.status = new
    digest.updated_at = now
    log.info("digest %s: %s -> %s%s", digest.id, old, new, f" ({note})" if note else "")


def schedule_digest(digest: Digest, send_at: datetime | None, now: datetime) -> None:
    """Schedule a draft (or reschedule a scheduled) digest for send_at, or now when None.

    A time that has passed is refused, not taken as now: the admin form and the API share
    this one rule, and "now" is asked for by giving no time.
    """
    if digest.status not in (DigestStatus.DRAFT, DigestStatus.SCHEDULED):
        raise InvalidTransition(digest, "scheduled")
    if send_at is not None and send_at <= now:
        raise SendTimePassed
    digest.send_at = send_at or now
    _move(digest, DigestStatus.SCHEDULED, now, f"send at {digest.send_at.isoformat()}")


def pause_digest(digest: Digest, reason: str, now: datetime) -> None:
    """Stop a scheduled or sending digest; queued deliveries wait, the reason is shown."""
    if digest.status not in (DigestStatus.SCHEDULED, DigestStatus.SENDING, DigestStatus.PAUSED):
        raise InvalidTransition(digest, "paused")
    digest.pause_reason = reason
    _move(digest, DigestStatus.PAUSED, now, reason)


def resume_digest(digest: Digest, now: datetime) -> None:
    """Carry on with a paused digest where it stopped."""
    if digest.status != DigestStatus.PAUSED:
        raise InvalidTransition(digest, "resumed")
    digest.pause_reason = ""
    _move(
        digest,
        DigestStatus.SENDING if digest.started_at is not None else DigestStatus.SCHEDULED,
        now,
    )


def cancel_digest(digest: Digest, now: datetime) -> int:
    """Cancel a digest that is not finished; its queued deliveries are skipped (returned)."""
    if digest.status in (DigestStatus.SENT, DigestStatus.CANCELLED):
        raise InvalidTransition(digest, "cancelled")
    skipped = skip_pending_of_digest(digest.id, "digest cancelled")
    digest.finished_at = now
    _move(digest, DigestStatus.CANCELLED, now)
    return skipped


def start_due_digests(now: datetime) -> list[int]:
    """Start every scheduled digest whose time has come: enqueue it and mark it sending."""
    started: list[int] = []
    due = db.session.scalars(
        select(Digest.id).where(Digest.status == DigestStatus.SCHEDULED, Digest.send_at <= now)
    ).all()
    for digest_id in due:
        # Compare-and-set, so two workers never start (and enqueue) the same digest twice.
        moved = db.session.execute(
            update(Digest)
            .where(Digest.id == digest_id, Digest.status == DigestStatus.SCHEDULED)
            .values(status=DigestStatus.SENDING, started_at=now, updated_at=now)
        )
        if not moved.rowcount:  # type: ignore[attr-defined]
            db.session.rollback()
            continue
        queued = enqueue_digest(digest_id, now)
        db.session.commit()
        log.info("digest %s: scheduled -> sending (%d deliveries queued)", digest_id, queued)
        started.append(digest_id)
    return started


def finish_digests(now: datetime) -> list[int]:
    """Mark sent every sending digest that has no delivery left queued or claimed."""
    still_open = exists().where(Delivery.digest_id == Digest.id, Delivery.status.in_(OPEN_STATUSES))
    candidates = db.session.scalars(
        select(Digest.id).where(Digest.status == DigestStatus.SENDING, ~still_open)
    ).all()
    finished: list[int] = []
    for digest_id in candidates:
        moved = db.session.execute(
            update(Digest)
            .where(Digest.id == digest_id, Digest.status == DigestStatus.SENDING, ~still_open)
            .values(status=DigestStatus.SENT, finished_at=now, updated_at=now)
        )
        if moved.rowcount:  # type: ignore[attr-defined]
            webhooks.emit_digest_sent(digest_id, now)
        db.session.commit()
        if moved.rowcount:  # type: ignore[attr-defined]
            counts = digest_counts(digest_id)
            log.info(
                "digest %s: sending -> sent (%d sent, %d failed, %d skipped)",
                digest_id,
                counts[DeliveryStatus.SENT],
                counts[DeliveryStatus.FAILED],
                counts[DeliveryStatus.SKIPPED],
            )
            finished.append(digest_id)
    return finished


def pause_for_error(digest_id: int, reason: str, now: datetime) -> None:
    """Pause a digest because our side is failing; nobody is blamed."""
    moved = db.session.execute(
        update(Digest)
        .where(
            Digest.id == digest_id,
            Digest.status.in_((DigestStatus.SENDING, DigestStatus.SCHEDULED)),
        )
        .values(status=DigestStatus.PAUSED, pause_reason=reason[:2000], updated_at=now)
    )
    if moved.rowcount:  # type: ignore[attr-defined]
        log.warning("digest %s: sending -> paused (%s)", digest_id, reason)


def pause_digests_of(ids: Sequence[int], reason: str, now: datetime) -> None:
    """Pause, as pause_for_error, every digest that some of these deliveries belong to."""
    digest_ids = db.session.scalars(
        select(Delivery.digest_id)
        .where(Delivery.id.in_(list(ids)), Delivery.kind == DeliveryKind.DIGEST)
        .distinct()
    ).all()
    for digest_id in digest_ids:
        if digest_id is not None:
            pause_for_error(digest_id, reason, now)


# --- recurring digests --------------------------------------------------------------------------


def _new_films_since_last_recurring(now: datetime) -> list[Film]:
    """Films added, or released, since the last recurring digest and not featured in it."""
    last = db.session.scalar(
        select(Digest)
        .where(Digest.period_key.is_not(None))
        .order_by(Digest.created_at.desc(), Digest.id.desc())
        .limit(1)
    )
    today = now.astimezone(UTC).date()
    query = select(Film).where(Film.created_at <= now)
    if last is not None:
        featured = select(DigestFilm.film_id).where(DigestFilm.digest_id == last.id)
        query = query.where(
            or_(
                Film.created_at > last.created_at,
                Film.release_date.between(last.created_at.date(), today),
            ),
            Film.id.not_in(featured),
        )
    return list(db.session.scalars(query.order_by(Film.created_at, Film.id)))


def compose_recurring_digest(slot: datetime, now: datetime) -> Digest | None:
    """Compose and schedule the digest of one period, once; None when done already or nothing new.

    Built and scheduled like an admin's digest (create_digest, schedule_digest), and committed
    here: the period's key is unique in the database, so of two workers firing the same slot
    only one can commit a digest; the other's insert fails and is rolled back.
    """
    period_key = slot.astimezone(UTC).isoformat(timespec="seconds")
    if db.session.scalar(select(Digest.id).where(Digest.period_key == period_key)) is not None:
        log.info("recurring digest %s: already composed", period_key)
        return None
    films = _new_films_since_last_recurring(now)
    if not films:
        log.info("recurring digest %s: nothing new since the last one, skipped", period_key)
        return None
    if len(films) > FILMS_MAX:
        log.warning(
            "recurring digest %s: %d new films, the first %d featured",
            period_key,
            len(films),
            FILMS_MAX,
        )
        films = films[:FILMS_MAX]
    subject = f"New documentaries: {slot.strftime('%d %B %Y')}"
    try:
        digest = create_digest(subject, "", "", [(film.id, "") for film in films], now)
        digest.period_key = period_key
        schedule_digest(digest, None, now)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        log.info("recurring digest %s: composed by another worker", period_key)
        return None
    log.info(
        "digest %s: composed for %s with %d films -> scheduled", digest.id, period_key, len(films)
    )
    return digest
