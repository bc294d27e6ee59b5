"""The data model: films, subscribers and their consent, digests, the delivery journal, admins."""

from __future__ import annotations

import enum
import secrets
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .extensions import Base, db

if TYPE_CHECKING:
    Model = Base
else:
    Model = db.Model

EMAIL_MAX = 254  # RFC 5321 path limit less the angle brackets


def new_link_key() -> str:
    """A fresh random value for a subscriber's signed links (a nonce or an unsubscribe key)."""
    return secrets.token_urlsafe(12)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always read back timezone-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; store timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _enum_values(enum_cls: type[enum.StrEnum]) -> str:
    return ", ".join(f"'{member.value}'" for member in enum_cls)


class SubscriberStatus(enum.StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    UNSUBSCRIBED = "unsubscribed"


class DigestStatus(enum.StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    PAUSED = "paused"
    SENT = "sent"
    CANCELLED = "cancelled"


class DeliveryKind(enum.StrEnum):
    CONFIRMATION = "confirmation"
    WELCOME = "welcome"
    DIGEST = "digest"
    EARLY_ACCESS = "early_access"
    TEST = "test"
    ALREADY_SUBSCRIBED = "already_subscribed"  # told to the address itself, never to the visitor
    ADDRESS_CONFIRMATION = "address_confirmation"  # to the new address of an address change
    ADDRESS_CHANGED = "address_changed"  # to the old address, once the new one is confirmed


class DeliveryStatus(enum.StrEnum):
    QUEUED = (
        "queued"  # due at next_attempt_at; also the state of a temporary failure awaiting retry
    )
    CLAIMED = "claimed"  # leased by a worker until lease_until
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"  # not sent on purpose: unsubscribed, suppressed, digest cancelled


class SuppressionReason(enum.StrEnum):
    HARD_BOUNCE = "hard_bounce"
    COMPLAINT = "complaint"
    SOFT_BOUNCES = "soft_bounces"  # too many soft bounces within MAILER_BOUNCE_SOFT_DAYS
    ERASED = "erased"
    MANUAL = "manual"


class AdminRole(enum.StrEnum):
    """What an admin may do, each role including the ones below it."""

    VIEWER = "viewer"  # looks at dashboards and read-only pages
    EDITOR = "editor"  # also keeps films and composes, tests, schedules and sends digests
    OWNER = "owner"  # also manages admins, API tokens, erasure, suppressions and settings

    @property
    def rank(self) -> int:
        """Order of power: viewer < editor < owner."""
        return list(AdminRole).index(self)


class ApiScope(enum.StrEnum):
    """What an API token may do, each scope including the ones below it."""

    READ = "read"  # GET only
    WRITE = "write"  # what an editor may do
    ADMIN = "admin"  # everything, as an owner

    @property
    def rank(self) -> int:
        """Order of power: read < write < admin."""
        return list(ApiScope).index(self)


class ConsentAction(enum.StrEnum):
    SUBSCRIBE = "subscribe"
    CONFIRM = "confirm"
    IMPORT = "import"
    PREFERENCES = "preferences"
    ADDRESS_CHANGE = "address_change"
    UNSUBSCRIBE = "unsubscribe"


class Film(Model):
    """A documentary in the catalogue."""

    __tablename__ = "films"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(120), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    director: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    year: Mapped[int | None] = mapped_column(Integer)
    country: Mapped[str] = mapped_column(String(100), default="")
    # No release date means the film is already public.
    release_date: Mapped[date | None] = mapped_column(Date)
    early_access_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    watch_url: Mapped[str] = mapped_column(String(2000), default="")
    poster_url: Mapped[str] = mapped_column(String(2000), default="")
    # Set once the worker has enqueued this film's early-access alerts.
    early_access_alerted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        Index("ix_films_release_date", "release_date"),
        Index("ix_films_early_access_at", "early_access_at"),
        Index("ix_films_created_at", "created_at"),
    )

    def __repr__(self) -> str:
        return f"<Film {self.slug}>"


class Subscriber(Model):
    """One address on the list, with its topics; the address is stored normalised."""

    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(EMAIL_MAX), unique=True)
    status: Mapped[str] = mapped_column(String(20), default=SubscriberStatus.PENDING)
    wants_digest: Mapped[bool] = mapped_column(Boolean, default=True)
    wants_early_access: Mapped[bool] = mapped_column(Boolean, default=True)
    # Part of every signed link; replacing it kills all links issued before.
    nonce: Mapped[str] = mapped_column(String(64))
    # Part of every unsubscribe link instead, and never replaced: an unsubscribe link must work
    # for the life of its mail, through address changes and comebacks (it can only unsubscribe).
    # A fresh row gets a fresh key, so a link never reaches a later row that reuses an id.
    unsubscribe_key: Mapped[str] = mapped_column(String(64), default=new_link_key)
    # An address change waits here until the new address confirms.
    pending_email: Mapped[str | None] = mapped_column(String(EMAIL_MAX))
    source: Mapped[str] = mapped_column(String(100), default="web")
    # The language of every page and mail for this subscriber (one of mailer.i18n.LANGUAGES).
    locale: Mapped[str] = mapped_column(String(8), default="en", server_default="en")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    confirmation_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    consent_events: Mapped[list[ConsentEvent]] = relationship(
        back_populates="subscriber",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="ConsentEvent.id",
    )

    __table_args__ = (
        CheckConstraint(f"status IN ({_enum_values(SubscriberStatus)})", name="status"),
        # Keyset pagination and the eligible-recipients scan both walk (status, id).
        Index("ix_subscribers_status_id", "status", "id"),
        Index("ix_subscribers_confirmed_at", "confirmed_at"),
        Index("ix_subscribers_created_at", "created_at"),
        # Address-prefix search (LIKE 'abc%'): PostgreSQL's default collation cannot use the
        # unique index for it, text_pattern_ops can.
        Index("ix_subscribers_email_prefix", "email", postgresql_ops={"email": "text_pattern_ops"}),
    )

    def __repr__(self) -> str:
        return f"<Subscriber {self.id} {self.status}>"


class ConsentEvent(Model):
    """Proof of consent: when, from where, through which form, and the exact words shown."""

    __tablename__ = "consent_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(30))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(500), default="")
    form: Mapped[str] = mapped_column(String(100), default="")
    page_url: Mapped[str] = mapped_column(String(2000), default="")
    consent_text: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    subscriber: Mapped[Subscriber] = relationship(back_populates="consent_events")

    __table_args__ = (Index("ix_consent_events_subscriber_id", "subscriber_id"),)


class Digest(Model):
    """A newsletter issue, stored once; deliveries point at it and never copy its body."""

    __tablename__ = "digests"

    id: Mapped[int] = mapped_column(primary_key=True)
    subject: Mapped[str] = mapped_column(String(200))
    preheader: Mapped[str] = mapped_column(String(200), default="")
    intro_markdown: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), default=DigestStatus.DRAFT)
    send_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    pause_reason: Mapped[str] = mapped_column(Text, default="")
    # A recurring schedule's period ("2026-W48"); unique so a period is composed once.
    period_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    films: Mapped[list[DigestFilm]] = relationship(
        back_populates="digest",
        cascade="all, delete-orphan",
        order_by="DigestFilm.position",
    )

    __table_args__ = (
        CheckConstraint(f"status IN ({_enum_values(DigestStatus)})", name="status"),
        Index("ix_digests_status_send_at", "status", "send_at"),
    )

    def __repr__(self) -> str:
        return f"<Digest {self.id} {self.status}>"


class DigestFilm(Model):
    """A film featured in a digest, in order, with an optional editor's note."""

    __tablename__ = "digest_films"

    digest_id: Mapped[int] = mapped_column(
        ForeignKey("digests.id", ondelete="CASCADE"), primary_key=True
    )
    film_id: Mapped[int] = mapped_column(ForeignKey("films.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    note: Mapped[str] = mapped_column(Text, default="")

    digest: Mapped[Digest] = relationship(back_populates="films")
    film: Mapped[Film] = relationship()

    __table_args__ = (Index("ix_digest_films_film_id", "film_id"),)


# The partial indexes' conditions; queries that want them say the same with literals (a bound
# parameter could not be matched to the condition by a reused PostgreSQL plan).
DUE_DIGEST = "status = 'queued' AND kind = 'digest'"
DUE_MAIL = "status = 'queued' AND kind <> 'digest'"
LEASED = "status = 'claimed'"


class Delivery(Model):
    """One message to one recipient: the journal row the worker claims, sends and records."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(30))
    status: Mapped[str] = mapped_column(String(20), default=DeliveryStatus.QUEUED)
    # No foreign keys to the digest and the subscriber: checking them took half the time of
    # enqueueing a million rows (a locked look-up per row). Nothing relies on them: the rows are
    # only ever made from existing ones, the code removes or anonymises a subscriber's rows
    # before the subscriber (as SQLite, which does not enforce them, always needed), digests
    # are never deleted, and the sender skips a row whose subscriber is gone.
    digest_id: Mapped[int | None] = mapped_column(Integer)
    film_id: Mapped[int | None] = mapped_column(ForeignKey("films.id", ondelete="CASCADE"))
    subscriber_id: Mapped[int | None] = mapped_column(Integer)
    # Set only where the recipient is not the subscriber's current address (test sends,
    # a new address awaiting confirmation, a notice to an old address).
    to_address: Mapped[str | None] = mapped_column(String(EMAIL_MAX))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    # Fixed at the first attempt and reused on every retry, so a resend is recognisable.
    message_id: Mapped[str | None] = mapped_column(String(255))
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint(f"status IN ({_enum_values(DeliveryStatus)})", name="status"),
        CheckConstraint(f"kind IN ({_enum_values(DeliveryKind)})", name="kind"),
        # Set-based enqueueing relies on these: a digest or an alert reaches a subscriber once.
        # The digest's one leads with the subscriber, so it also finds a subscriber's rows.
        UniqueConstraint("subscriber_id", "digest_id"),
        Index(
            "uq_deliveries_film_id_subscriber_id",
            "film_id",
            "subscriber_id",
            unique=True,
            postgresql_where=text("film_id IS NOT NULL"),
            sqlite_where=text("film_id IS NOT NULL"),
        ),
        # Dashboard counts by status per digest, read from the index alone (its few distinct
        # keys are stored once each); also finds a digest's open rows.
        Index("ix_deliveries_digest_id_status_kind", "digest_id", "status", "kind"),
        # The claim (sending.claim_batch), one partial index per branch, so that sent rows and
        # paused digests cost it nothing: each sending digest's due rows, other due mail, and
        # leases that may have run out.
        Index(
            "ix_deliveries_due_digest",
            "digest_id",
            "next_attempt_at",
            "id",
            postgresql_where=text(DUE_DIGEST),
            sqlite_where=text(DUE_DIGEST),
        ),
        Index(
            "ix_deliveries_due_mail",
            "next_attempt_at",
            "id",
            postgresql_where=text(DUE_MAIL),
            sqlite_where=text(DUE_MAIL),
        ),
        Index(
            "ix_deliveries_leased",
            "lease_until",
            "id",
            postgresql_where=text(LEASED),
            sqlite_where=text(LEASED),
        ),
    )

    def __repr__(self) -> str:
        return f"<Delivery {self.id} {self.kind} {self.status}>"


class DeliveryCount(Model):
    """How many of a digest's deliveries (test sends aside) are in each status.

    Kept by PostgreSQL itself: statement triggers on deliveries add up each statement's changes
    (see the migration b4e8d1f0a2c3), so the dashboard reads a few rows instead of counting a
    million while they change. SQLite counts the deliveries instead (and leaves this empty).
    """

    __tablename__ = "delivery_counts"

    digest_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    status: Mapped[str] = mapped_column(String(20), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)


class Suppression(Model):
    """An address that must never be mailed or re-added; erased ones keep only a hash."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(primary_key=True)
    email_hash: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str | None] = mapped_column(String(EMAIL_MAX))
    reason: Mapped[str] = mapped_column(String(30))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint(f"reason IN ({_enum_values(SuppressionReason)})", name="reason"),
    )


class BounceKind(enum.StrEnum):
    HARD = "hard"  # the address cannot receive mail: suppressed at once
    SOFT = "soft"  # a passing failure (full mailbox, greylisting): counted in a window
    COMPLAINT = "complaint"  # the recipient reported the mail as spam (an ARF report)


class ReportStatus(enum.StrEnum):
    PENDING = "pending"  # journaled, not parsed yet (a crash here is reprocessed on restart)
    PARSED = "parsed"  # read: its bounces are recorded
    IGNORED = "ignored"  # read: nothing in it for us (an auto-reply, a forged return address)
    FAILED = "failed"  # could not be read: kept for the admin with the error


class InboundReport(Model):
    """A bounce or complaint as it arrived, raw, journaled before it is parsed."""

    __tablename__ = "inbound_reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    # How it arrived: smtp (the bounce server), imap, maildir, or a provider's webhook.
    source: Mapped[str] = mapped_column(String(20))
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    # Hex SHA-256 of the raw bytes: the same message read twice is journaled once.
    raw_digest: Mapped[str] = mapped_column(String(64), unique=True)
    message_id: Mapped[str] = mapped_column(String(255), default="")
    envelope_to: Mapped[str] = mapped_column(String(EMAIL_MAX), default="")
    status: Mapped[str] = mapped_column(String(20), default=ReportStatus.PENDING)
    error: Mapped[str] = mapped_column(Text, default="")
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    parsed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint(f"status IN ({_enum_values(ReportStatus)})", name="status"),
        Index("ix_inbound_reports_status_id", "status", "id"),
    )


class Bounce(Model):
    """One bounce or complaint for one address: which mail, when, why. Never deleted."""

    __tablename__ = "bounces"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    # Plain integers like Delivery's: a bounce outlives erased subscribers' rows.
    delivery_id: Mapped[int | None] = mapped_column(Integer)
    digest_id: Mapped[int | None] = mapped_column(Integer)
    subscriber_id: Mapped[int | None] = mapped_column(Integer)
    address: Mapped[str] = mapped_column(String(EMAIL_MAX))
    diagnostic: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), default="")  # the enhanced code, e.g. 5.1.1
    # smtp-session, dsn, arf, imap, maildir, ses, mailgun, postmark, sendgrid
    source: Mapped[str] = mapped_column(String(20))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    report_id: Mapped[int | None] = mapped_column(
        ForeignKey("inbound_reports.id", ondelete="SET NULL")
    )

    __table_args__ = (
        CheckConstraint(f"kind IN ({_enum_values(BounceKind)})", name="kind"),
        # A report names an address once: reading it again records nothing new.
        UniqueConstraint("report_id", "address"),
        Index("ix_bounces_digest_id_kind", "digest_id", "kind"),
        Index("ix_bounces_address_kind_received_at", "address", "kind", "received_at"),
        Index("ix_bounces_received_at_id", "received_at", "id"),
    )


class Admin(Model):
    """A member of the editorial team who signs in to /admin."""

    __tablename__ = "admins"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(EMAIL_MAX), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    # Bumped on password change and sign-out everywhere; sessions carry it and die when it moves.
    session_version: Mapped[int] = mapped_column(Integer, default=1)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    role: Mapped[str] = mapped_column(String(16), default=AdminRole.EDITOR)
    # Base32 TOTP secret once two-factor sign-in is confirmed; None while it is off.
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    # The last 30-second time step whose code was accepted: a code is good once only.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (CheckConstraint(f"role IN ({_enum_values(AdminRole)})", name="role"),)


class AdminSession(Model):
    """One signed-in browser of an admin; signing out deletes it, and that session ends."""

    __tablename__ = "admin_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    admin_id: Mapped[int] = mapped_column(ForeignKey("admins.id", ondelete="CASCADE"), index=True)
    # SHA-256 of the random key the session cookie carries.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AdminRecoveryCode(Model):
    """A one-time code that stands in for a TOTP code; only its argon2 hash is kept."""

    __tablename__ = "admin_recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    admin_id: Mapped[int] = mapped_column(ForeignKey("admins.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(255))
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ApiToken(Model):
    """A bearer token for the JSON API; only its hash is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    scope: Mapped[str] = mapped_column(String(8), default=ApiScope.ADMIN)

    __table_args__ = (CheckConstraint(f"scope IN ({_enum_values(ApiScope)})", name="scope"),)


class EmbedForm(Model):
    """A subscribe form placed on another site: its origins, topics and consent text."""

    __tablename__ = "embed_forms"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    origins: Mapped[list[str]] = mapped_column(JSON, default=list)
    topics: Mapped[list[str]] = mapped_column(JSON, default=list)
    consent_text: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class EarlyAccessOpen(Model):
    """That some subscriber opened a film's early-access link: counted, not named."""

    __tablename__ = "early_access_opens"

    id: Mapped[int] = mapped_column(primary_key=True)
    film_id: Mapped[int] = mapped_column(ForeignKey("films.id", ondelete="CASCADE"))
    # A keyed hash of the subscriber, so repeat opens count once without saying who.
    opener_hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("film_id", "opener_hash"),)


class SendPace(Model):
    """The next free sending slot, shared by every worker to cap MAILER_SEND_RATE."""

    __tablename__ = "send_pace"

    # One row (id 1), created by the first worker that sends under a rate.
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    # Microseconds since the epoch: no further message may start before this.
    next_slot_us: Mapped[int] = mapped_column(BigInteger)


class WebhookDeliveryStatus(enum.StrEnum):
    QUEUED = "queued"  # due at next_attempt_at; also a failed attempt awaiting its retry
    CLAIMED = "claimed"  # being sent by a worker until lease_until
    SENT = "sent"  # the receiver answered 2xx
    FAILED = "failed"  # gave up at the retry deadline
    SKIPPED = "skipped"  # not sent on purpose: the endpoint was disabled


class WebhookEndpoint(Model):
    """A URL an admin registered for some events, with the secret its deliveries are signed with."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(200), default="")
    # Event names (webhooks.WebhookEvent values) this endpoint receives.
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Kept in the clear: signing needs it (the admin page shows it only once, at creation).
    secret: Mapped[str] = mapped_column(String(100))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


QUEUED_WEBHOOK = "status = 'queued'"
LEASED_WEBHOOK = "status = 'claimed'"


class WebhookDelivery(Model):
    """One event to one endpoint: the journal row the worker claims, posts, retries and records."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(50))
    # The webhook-id header: the same for every endpoint and every attempt of one event.
    message_id: Mapped[str] = mapped_column(String(64))
    # The exact JSON body, so every attempt signs and sends the same bytes.
    payload: Mapped[str] = mapped_column(Text)
    # Whom the payload names, so erasing the subscriber can take the address out of it.
    subscriber_id: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default=WebhookDeliveryStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The last answer: its status code (None when there was none) and the start of its body.
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_excerpt: Mapped[str] = mapped_column(Text, default="")
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint(f"status IN ({_enum_values(WebhookDeliveryStatus)})", name="status"),
        # An endpoint's recent deliveries (the admin page), and its rows on disable.
        Index("ix_webhook_deliveries_endpoint_id_id", "endpoint_id", "id"),
        Index("ix_webhook_deliveries_subscriber_id", "subscriber_id"),
        # The worker's claim: due rows, and leases that ran out.
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            "id",
            postgresql_where=text(QUEUED_WEBHOOK),
            sqlite_where=text(QUEUED_WEBHOOK),
        ),
        Index(
            "ix_webhook_deliveries_leased",
            "lease_until",
            "id",
            postgresql_where=text(LEASED_WEBHOOK),
            sqlite_where=text(LEASED_WEBHOOK),
        ),
    )


class WebhookRefusal(Model):
    """A request to POST /webhooks/<provider> that was refused, kept for the admins to see."""

    __tablename__ = "webhook_refusals"

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(30))
    reason: Mapped[str] = mapped_column(String(200))
    status_code: Mapped[int] = mapped_column(Integer)
    remote_addr: Mapped[str] = mapped_column(String(64), default="")
    # The start of the body only: enough to tell a misconfiguration from an attack.
    body_excerpt: Mapped[str] = mapped_column(Text, default="")
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class WebhookEventSeen(Model):
    """A provider's event (or request) id already accepted: the same one again is a replay."""

    __tablename__ = "webhook_events_seen"

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(30))
    event_key: Mapped[str] = mapped_column(String(255))
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("provider", "event_key"),)
