"""What rendering takes from the delivery journal: a delivery, its reader, its Message-ID, and
whether the reader may see early access (both defined once, in mailer/journal.py)."""

from __future__ import annotations

from typing import Protocol, TypeVar

from ..config import MailSettings
from ..journal import may_receive, message_id
from ..models import Delivery, DeliveryKind, Subscriber
from ..tokens import TokenOwner
from .headers import from_address


class Undeliverable(Exception):
    """This delivery can no longer be rendered (digest or film gone, or the reader may not
    see it); the engine should skip it rather than retry."""


class Journaled(Protocol):
    """What rendering reads of a delivery: its model object, or the row the sender read."""

    @property
    def id(self) -> int: ...

    @property
    def kind(self) -> str: ...

    @property
    def digest_id(self) -> int | None: ...

    @property
    def film_id(self) -> int | None: ...

    @property
    def message_id(self) -> str | None: ...


class Recipient(TokenOwner, Protocol):
    """What rendering reads of a subscriber: its model object, or the row the sender read."""

    @property
    def email(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def wants_early_access(self) -> bool: ...

    @property
    def locale(self) -> str: ...


R = TypeVar("R", bound=Recipient)


def reader_of(subscriber: R | None, delivery: Journaled) -> R:
    """The delivery's subscriber, which this kind cannot do without."""
    if subscriber is None:
        raise Undeliverable(f"delivery {delivery.id} ({delivery.kind}) has no subscriber")
    return subscriber


def recipient_of(delivery: Delivery, subscriber: Subscriber | None) -> str:
    """Where a delivery goes: its own address if set, else the subscriber's."""
    if delivery.to_address:
        return delivery.to_address
    if subscriber is None:
        raise Undeliverable(f"delivery {delivery.id} has no recipient")
    return subscriber.email


# --- The journal's Message-ID and eligibility, as rendering needs them ---------------------------


def message_id_for(delivery: Delivery, settings: MailSettings) -> str:
    """The delivery's Message-ID, fixed at its first attempt and reused on retry."""
    if delivery.message_id is None:
        domain = from_address(settings)[1].rpartition("@")[2]
        delivery.message_id = message_id(delivery.id, domain)
    return delivery.message_id


def message_id_of(delivery: Journaled, settings: MailSettings) -> str:
    """The delivery's Message-ID; the sender's rows have theirs from the claim."""
    if delivery.message_id is not None:
        return delivery.message_id
    if isinstance(delivery, Delivery):
        return message_id_for(delivery, settings)
    raise Undeliverable(f"delivery {delivery.id} has no Message-ID")


def may_see_early(subscriber: Recipient | None) -> bool:
    """Only subscribers who may receive early-access alerts get early links."""
    return may_receive(DeliveryKind.EARLY_ACCESS, subscriber)
