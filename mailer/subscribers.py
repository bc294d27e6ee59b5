"""A subscriber's life: subscribe, confirm, preferences, address change, unsubscribe, privacy."""

from __future__ import annotations

import enum
import logging
import secrets
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import bindparam, delete, exists, func, literal, select, update

from . import journal, webhooks
from .address_hash import email_hash
from .extensions import db
from .i18n import DEFAULT_LOCALE, LANGUAGES, N_, supported
from .models import (
    EMAIL_MAX,
    ConsentAction,
    ConsentEvent,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Digest,
    Subscriber,
    SubscriberStatus,
    Suppression,
    SuppressionReason,
)
from .suppressions import is_suppressed, suppress
from .tokens import ExpiredToken, InvalidToken, Purpose, new_nonce, read_token, subscriber_for

log = logging.getLogger(__name__)

# The words next to the web form's button, shown and recorded verbatim with every consent.
# Marked with N_: the constant stays English; gettext(CONSENT_TEXT) is what a visitor sees.
CONSENT_TEXT = N_(
    "By subscribing you agree that we e-mail you the topics you ticked, and that we keep a record "
    "of this consent. Every e-mail has a link to change your topics, download your data, or "
    "unsubscribe in one click."
)


class SubscriptionError(Exception):
    """Something about a subscription request cannot be done; the message says what."""


class InvalidAddress(SubscriptionError, ValueError):
    """The e-mail address is not one we can accept; the message is fit to show the visitor."""


class InvalidTopics(SubscriptionError, ValueError):
    """No topic, or an unknown one, was chosen."""


class AddressUnchanged(SubscriptionError):
    """An address change to the address already on file."""


class AddressUnavailable(SubscriptionError):
    """The new address of an address change is already on the list or may not be mailed."""


class AddressSuppressed(SubscriptionError):
    """The address is on the suppression list (bounced, complained, erased) and cannot be added."""


class NotPending(SubscriptionError):
    """The subscriber is not awaiting confirmation (it unsubscribed in the meantime)."""


class Topic(enum.StrEnum):
    """What a subscriber can choose to receive."""

    DIGEST = "digest"
    EARLY_ACCESS = "early_access"


# How the forms name each topic to a visitor.
TOPIC_LABELS = {
    Topic.DIGEST.value: _l("The newsletter digest"),
    Topic.EARLY_ACCESS.value: _l("Early-access alerts for new films"),
}


class ImportResult(enum.StrEnum):
    """What importing one address did."""

    ADDED_CONFIRMED = "added_confirmed"
    ADDED_PENDING = "added_pending"  # a confirmation mail is queued
    ALREADY_LISTED = "already_listed"  # left exactly as it was


@dataclass(frozen=True)
class ConsentContext:
    """Where and how consent was given: kept with every consent record."""

    ip: str = ""
    user_agent: str = ""
    form: str = ""
    page_url: str = ""
    consent_text: str = ""


def normalise_email(raw: str) -> str:
    """The address as we store it (lower case, ASCII domain); raise InvalidAddress if unusable."""
    if not isinstance(raw, str):
        raise InvalidAddress(_("Please enter your e-mail address."))
    # Refused, not stripped: a line break in an address is a header-injection attempt.
    if any(unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") for char in raw):
        raise InvalidAddress(
            _("An e-mail address cannot contain line breaks or control characters.")
        )
    candidate = raw.strip(" ")
    if not candidate:
        raise InvalidAddress(_("Please enter your e-mail address."))
    if len(candidate) > EMAIL_MAX:
        raise InvalidAddress(
            _("That address is too long (at most %(max)s characters).", max=EMAIL_MAX)
        )
    try:
        info = validate_email(
            candidate, check_deliverability=False, allow_smtputf8=False, strict=True
        )
    except EmailNotValidError as exc:
        raise InvalidAddress(str(exc)) from None
    address = (info.ascii_email or info.normalized).lower()
    if len(address) > EMAIL_MAX:
        raise InvalidAddress(
            _("That address is too long (at most %(max)s characters).", max=EMAIL_MAX)
        )
    return address


def parse_topics(topics: Iterable[str]) -> set[Topic]:
    """The chosen topics; raise InvalidTopics when none or an unknown one is given."""
    chosen: set[Topic] = set()
    for value in topics:
        try:
            chosen.add(Topic(value))
        except ValueError:
            raise InvalidTopics(_("Unknown topic %(topic)r.", topic=value)) from None
    if not chosen:
        raise InvalidTopics(_("Please choose at least one thing to receive."))
    return chosen


def topics_of(subscriber: Subscriber) -> list[Topic]:
    """The topics a subscriber currently receives."""
    chosen = []
    if subscriber.wants_digest:
        chosen.append(Topic.DIGEST)
    if subscriber.wants_early_access:
        chosen.append(Topic.EARLY_ACCESS)
    return chosen


def _set_topics(subscriber: Subscriber, topics: set[Topic]) -> None:
    subscriber.wants_digest = Topic.DIGEST in topics
    subscriber.wants_early_access = Topic.EARLY_ACCESS in topics


def _record(
    subscriber: Subscriber,
    action: ConsentAction,
    consent: ConsentContext | None,
    now: datetime,
    **details: Any,
) -> None:
    """Add a consent record, cut to the column sizes so odd headers never fail the insert."""
    consent = consent or ConsentContext()
    db.session.add(
        ConsentEvent(
            subscriber_id=subscriber.id,
            action=action,
            at=now,
            ip=consent.ip[:64],
            user_agent=consent.user_agent[:500],
            form=consent.form[:100],
            page_url=consent.page_url[:2000],
            consent_text=consent.consent_text,
            details=details,
        )
    )


def find_subscriber(address: str) -> Subscriber | None:
    """The subscriber with this normalised address, if any."""
    return db.session.scalar(select(Subscriber).where(Subscriber.email == address))


# One row for any address: its subscriber (NULLs when there is none) and whether it is suppressed.
# Built once, as the sign-up form runs it on every post.
_STANDING = (
    select(
        Subscriber,
        exists().where(Suppression.email_hash == bindparam("email_hash")).label("suppressed"),
    )
    .select_from(select(literal(1)).subquery())
    .outerjoin(Subscriber, Subscriber.email == bindparam("email"))
)


def _standing(address: str) -> tuple[Subscriber | None, bool]:
    """The subscriber with this normalised address (if any) and whether the address is
    suppressed, read in one query, so every address costs the same read whatever its state."""
    subscriber, suppressed = db.session.execute(
        _STANDING, {"email": address, "email_hash": email_hash(address)}
    ).one()
    return subscriber, bool(suppressed)


def _resend_due(subscriber: Subscriber, now: datetime) -> bool:
    interval = timedelta(seconds=int(current_app.config["MAILER_CONFIRM_RESEND_INTERVAL"]))
    sent = subscriber.confirmation_sent_at
    return sent is None or now - sent >= interval


def _queue_confirmation(subscriber: Subscriber, now: datetime) -> None:
    subscriber.confirmation_sent_at = now
    journal.queue_message(DeliveryKind.CONFIRMATION, subscriber, now)


def _notice_due(subscriber: Subscriber, now: datetime) -> bool:
    """Whether no "already subscribed" notice went to this subscriber within the interval."""
    interval = timedelta(seconds=int(current_app.config["MAILER_CONFIRM_RESEND_INTERVAL"]))
    recent = db.session.scalar(
        select(Delivery.id).where(
            Delivery.subscriber_id == subscriber.id,
            Delivery.kind == DeliveryKind.ALREADY_SUBSCRIBED,
            Delivery.created_at > now - interval,
        )
    )
    return recent is None


def subscribe(
    email: str,
    topics: Iterable[str],
    consent: ConsentContext,
    now: datetime,
    *,
    source: str = "web",
    locale: str = DEFAULT_LOCALE,
) -> None:
    """Start (or restart) double opt-in; the caller learns nothing about the address's state.

    ``locale`` is the language of their pages and mail from now on (a confirmed subscriber's
    stays: anyone can type an address into the form)."""
    address = normalise_email(email)
    chosen = parse_topics(topics)
    subscriber, suppressed = _standing(address)
    if suppressed:
        return
    if subscriber is None:
        # confirmation_sent_at is set before the INSERT, so the row needs no UPDATE afterwards.
        subscriber = Subscriber(
            email=address, status=SubscriberStatus.PENDING, nonce=new_nonce(),
            source=source[:100], created_at=now, confirmation_sent_at=now,
            locale=supported(locale),
        )  # fmt: skip
        _set_topics(subscriber, chosen)
        db.session.add(subscriber)
        db.session.flush()
        _record(subscriber, ConsentAction.SUBSCRIBE, consent, now, topics=sorted(map(str, chosen)))
        webhooks.emit_subscriber(webhooks.WebhookEvent.SUBSCRIBED, subscriber, now)
        _queue_confirmation(subscriber, now)
        return
    if subscriber.status == SubscriberStatus.CONFIRMED:
        # Topics stay as the subscriber set them: anyone can type an address into the form.
        if _notice_due(subscriber, now):
            journal.queue_message(DeliveryKind.ALREADY_SUBSCRIBED, subscriber, now)
        return
    coming_back = subscriber.status == SubscriberStatus.UNSUBSCRIBED
    if coming_back:
        subscriber.status = SubscriberStatus.PENDING
        subscriber.confirmed_at = None
        subscriber.source = source[:100]
    _set_topics(subscriber, chosen)
    subscriber.locale = supported(locale)
    _record(subscriber, ConsentAction.SUBSCRIBE, consent, now, topics=sorted(map(str, chosen)))
    webhooks.emit_subscriber(webhooks.WebhookEvent.SUBSCRIBED, subscriber, now)
    # Only someone holding an unsubscribe link can unsubscribe, so coming back is never bombing.
    if coming_back or _resend_due(subscriber, now):
        _queue_confirmation(subscriber, now)


def resend_confirmation(subscriber: Subscriber, now: datetime) -> None:
    """Queue a fresh confirmation if the subscriber still needs one and none went out lately."""
    if (
        subscriber.status == SubscriberStatus.PENDING
        and not is_suppressed(subscriber.email)
        and _resend_due(subscriber, now)
    ):
        _queue_confirmation(subscriber, now)


def resend_for_link(token: str, now: datetime) -> None:
    """Resend a confirmation asked for from a (possibly expired) genuine link; else InvalidToken."""
    try:
        claims = read_token(Purpose.CONFIRM, token)
    except ExpiredToken as expired:
        claims = expired.claims
    subscriber = db.session.get(Subscriber, claims.subscriber_id)
    if subscriber is not None and secrets.compare_digest(subscriber.nonce, claims.nonce):
        resend_confirmation(subscriber, now)


def confirm(subscriber: Subscriber, consent: ConsentContext, now: datetime) -> None:
    """Confirm a pending subscriber and queue the welcome mail; confirming twice changes nothing."""
    if subscriber.status == SubscriberStatus.CONFIRMED:
        return
    if subscriber.status != SubscriberStatus.PENDING:
        raise NotPending(_("This subscription is not waiting for confirmation."))
    subscriber.status = SubscriberStatus.CONFIRMED
    subscriber.confirmed_at = now
    _record(
        subscriber,
        ConsentAction.CONFIRM,
        consent,
        now,
        topics=[str(t) for t in topics_of(subscriber)],
    )
    webhooks.emit_subscriber(webhooks.WebhookEvent.CONFIRMED, subscriber, now)
    journal.queue_message(DeliveryKind.WELCOME, subscriber, now)


def unsubscribe(subscriber: Subscriber, now: datetime, consent: ConsentContext | None) -> None:
    """Stop all mail at once and kill every link issued so far but the unsubscribe links (they
    can only unsubscribe again); repeating changes nothing."""
    if subscriber.status == SubscriberStatus.UNSUBSCRIBED:
        return
    subscriber.status = SubscriberStatus.UNSUBSCRIBED
    subscriber.unsubscribed_at = now
    subscriber.pending_email = None
    subscriber.nonce = new_nonce()
    journal.skip_pending_for(subscriber.id, "unsubscribed")
    _record(subscriber, ConsentAction.UNSUBSCRIBE, consent, now)
    webhooks.emit_subscriber(webhooks.WebhookEvent.UNSUBSCRIBED, subscriber, now)


def unsubscribe_target(token: str) -> Subscriber | None:
    """Whom an unsubscribe link stops: its subscriber, whatever happened since the mail went out
    (an address change, unsubscribing and coming back), or None when nobody is left to stop.

    The link binds the subscriber's unsubscribe key, which is never replaced, so a genuine link
    fails the check only when its row is gone: purged or erased (its id perhaps reused by a new
    row), or the link predates the key. That answers as a success with nothing done, so a
    repeated one-click POST is harmless; but a confirmed subscriber now holding the id must
    neither be unsubscribed nor see a false success, so that raises InvalidToken.
    """
    try:
        subscriber, _claims = subscriber_for(Purpose.UNSUBSCRIBE, token)
    except InvalidToken:
        claims = read_token(Purpose.UNSUBSCRIBE, token)  # raises unless genuine
        current = db.session.get(Subscriber, claims.subscriber_id)
        if current is not None and current.status == SubscriberStatus.CONFIRMED:
            raise
        return None
    return subscriber


def update_preferences(
    subscriber: Subscriber, topics: Iterable[str], consent: ConsentContext, now: datetime
) -> None:
    """Change what a subscriber receives, and record it."""
    chosen = parse_topics(topics)
    _set_topics(subscriber, chosen)
    _record(subscriber, ConsentAction.PREFERENCES, consent, now, topics=sorted(map(str, chosen)))


class UnknownLanguage(SubscriptionError, ValueError):
    """A language we do not write in."""


def change_language(
    subscriber: Subscriber, locale: str, consent: ConsentContext, now: datetime
) -> None:
    """Write to the subscriber in ``locale`` from now on, and record it like a topic change."""
    if locale not in LANGUAGES:
        raise UnknownLanguage(_("Please choose one of the languages offered."))
    if locale != subscriber.locale:
        subscriber.locale = locale
        _record(subscriber, ConsentAction.PREFERENCES, consent, now, locale=locale)


def request_address_change(
    subscriber: Subscriber, new_email: str, consent: ConsentContext, now: datetime
) -> None:
    """Ask the new address to confirm; nothing changes until it does."""
    address = normalise_email(new_email)
    if address == subscriber.email:
        raise AddressUnchanged(_("That is already your address."))
    if subscriber.pending_email is not None:
        # A newer request replaces an older one: the older link must not confirm the new address.
        subscriber.nonce = new_nonce()
        db.session.execute(
            update(Delivery)
            .where(
                Delivery.subscriber_id == subscriber.id,
                Delivery.kind == DeliveryKind.ADDRESS_CONFIRMATION,
                Delivery.status == DeliveryStatus.QUEUED,
            )
            .values(status=DeliveryStatus.SKIPPED, last_error="superseded")
        )
    subscriber.pending_email = address
    _record(subscriber, ConsentAction.ADDRESS_CHANGE, consent, now, requested=address)
    # A suppressed address is never mailed; the requester is told nothing either way.
    if not is_suppressed(address):
        journal.queue_message(
            DeliveryKind.ADDRESS_CONFIRMATION, subscriber, now, to_address=address
        )


def confirm_address_change(subscriber: Subscriber, consent: ConsentContext, now: datetime) -> str:
    """Switch to the confirmed new address, tell the old one, kill old links (but not unsubscribe
    links); return the new one."""
    new = subscriber.pending_email
    if new is None:
        raise AddressUnavailable(_("There is no address change waiting to be confirmed."))
    if is_suppressed(new) or find_subscriber(new) is not None:
        subscriber.pending_email = None
        raise AddressUnavailable(_("That address is already on our list, so nothing was changed."))
    old = subscriber.email
    subscriber.email = new
    subscriber.pending_email = None
    subscriber.nonce = new_nonce()
    _record(subscriber, ConsentAction.ADDRESS_CHANGE, consent, now, confirmed=new)
    journal.queue_message(DeliveryKind.ADDRESS_CHANGED, subscriber, now, to_address=old)
    return new


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def export_data(subscriber: Subscriber) -> dict[str, Any]:
    """Everything kept about a subscriber, as JSON-ready data (profile, consent, deliveries)."""
    consent = [
        {
            "action": event.action,
            "at": _iso(event.at),
            "ip": event.ip,
            "user_agent": event.user_agent,
            "form": event.form,
            "page_url": event.page_url,
            "consent_text": event.consent_text,
            "details": event.details,
        }
        for event in db.session.scalars(
            select(ConsentEvent)
            .where(ConsentEvent.subscriber_id == subscriber.id)
            .order_by(ConsentEvent.id)
        )
    ]
    rows = db.session.execute(
        select(Delivery, Digest.subject)
        .outerjoin(Digest, Digest.id == Delivery.digest_id)
        .where(Delivery.subscriber_id == subscriber.id)
        .order_by(Delivery.id)
    )
    deliveries = [
        {
            "kind": delivery.kind,
            "status": delivery.status,
            "to": delivery.to_address or subscriber.email,
            "subject": subject,
            "queued_at": _iso(delivery.created_at),
            "sent_at": _iso(delivery.sent_at),
        }
        for delivery, subject in rows
    ]
    return {
        "profile": {
            "email": subscriber.email,
            "status": subscriber.status,
            "topics": [str(topic) for topic in topics_of(subscriber)],
            "pending_email": subscriber.pending_email,
            "source": subscriber.source,
            "created_at": _iso(subscriber.created_at),
            "confirmed_at": _iso(subscriber.confirmed_at),
            "unsubscribed_at": _iso(subscriber.unsubscribed_at),
        },
        "consent": consent,
        "deliveries": deliveries,
    }


def erase(subscriber: Subscriber, now: datetime) -> None:
    """Delete a subscriber's personal data; keep only a hash so no import can re-add the address."""
    suppress(
        subscriber.email, SuppressionReason.ERASED, now, note="erased at the subscriber's request"
    )
    journal.skip_pending_for(subscriber.id, "erased")
    webhooks.forget_subscribers([subscriber.id])
    # Delivery rows stay for the digests' counts, with nothing left that names the person.
    db.session.execute(
        update(Delivery)
        .where(Delivery.subscriber_id == subscriber.id)
        .values(subscriber_id=None, to_address=None, last_error="")
    )
    db.session.execute(delete(ConsentEvent).where(ConsentEvent.subscriber_id == subscriber.id))
    # Forget any loaded events, or the ORM would try to delete the rows just removed.
    db.session.expire(subscriber, ["consent_events"])
    db.session.delete(subscriber)


def purge_unconfirmed(now: datetime) -> int:
    """Delete addresses never confirmed within MAILER_PURGE_UNCONFIRMED_DAYS; return how many."""
    cutoff = now - timedelta(days=int(current_app.config["MAILER_PURGE_UNCONFIRMED_DAYS"]))
    stale = select(Subscriber.id).where(
        Subscriber.status == SubscriberStatus.PENDING,
        func.coalesce(Subscriber.confirmation_sent_at, Subscriber.created_at) < cutoff,
    )
    # Dependent rows first: SQLite does not enforce the foreign keys' cascades.
    db.session.execute(delete(ConsentEvent).where(ConsentEvent.subscriber_id.in_(stale)))
    db.session.execute(delete(Delivery).where(Delivery.subscriber_id.in_(stale)))
    webhooks.forget_subscribers(stale)
    result = db.session.execute(
        delete(Subscriber).where(Subscriber.id.in_(stale)),
        execution_options={"synchronize_session": False},
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def import_subscriber(
    email: str,
    topics: Iterable[str],
    consent: ConsentContext,
    now: datetime,
    send_confirmation: bool,
    *,
    source: str = "import",
) -> ImportResult:
    """Add one address from an import; never re-adds a suppressed one, never touches existing."""
    address = normalise_email(email)
    chosen = parse_topics(topics)
    if is_suppressed(address):
        raise AddressSuppressed(_("This address is on the suppression list and cannot be added."))
    if find_subscriber(address) is not None:
        return ImportResult.ALREADY_LISTED
    subscriber = Subscriber(
        email=address, nonce=new_nonce(), source=source[:100], created_at=now,
        status=SubscriberStatus.PENDING if send_confirmation else SubscriberStatus.CONFIRMED,
        confirmed_at=None if send_confirmation else now,
    )  # fmt: skip
    _set_topics(subscriber, chosen)
    db.session.add(subscriber)
    db.session.flush()
    _record(subscriber, ConsentAction.IMPORT, consent, now, topics=sorted(map(str, chosen)))
    if send_confirmation:
        _queue_confirmation(subscriber, now)
        return ImportResult.ADDED_PENDING
    return ImportResult.ADDED_CONFIRMED
