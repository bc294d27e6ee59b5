"""Signed links: one salt per purpose, a subscriber's id and nonce (or unsubscribe key) inside,
key rotation."""

from __future__ import annotations

import enum
import functools
import secrets
from dataclasses import dataclass
from typing import Protocol

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from .extensions import db
from .models import Subscriber, new_link_key
from .routing import MAX_ID


class Purpose(enum.StrEnum):
    """What a link is for; a token made for one purpose never works for another."""

    CONFIRM = "confirm"
    UNSUBSCRIBE = "unsubscribe"
    PREFERENCES = "preferences"
    EARLY_ACCESS = "early"
    ADDRESS = "address"  # confirming a new address after an address change


# Unsubscribe links keep working as long as their subscriber exists; preferences links a year.
# Confirmation links live MAILER_CONFIRM_MAX_AGE; early-access links end at the film's release,
# which the early-access view checks against the film itself.
MAX_AGE: dict[Purpose, int | None] = {
    Purpose.UNSUBSCRIBE: None,
    Purpose.PREFERENCES: 365 * 24 * 3600,
    Purpose.EARLY_ACCESS: None,
}


class InvalidToken(Exception):
    """The link was tampered with, made for another purpose, or no longer applies."""


class ImpossibleId(InvalidToken):
    """A genuinely signed link whose payload names an id no row can ever have: nobody's link."""


class ExpiredToken(InvalidToken):
    """The link was genuine but is too old; ``claims`` says whose it was."""

    def __init__(self, claims: TokenClaims) -> None:
        super().__init__("link expired")
        self.claims = claims


@dataclass(frozen=True)
class TokenClaims:
    """What a link says: whose it is, the nonce (or unsubscribe key) it was made with, and the
    film if any."""

    subscriber_id: int
    nonce: str
    film_id: int | None = None


class TokenOwner(Protocol):
    """What a token is made from: a subscriber's id, nonce and unsubscribe key (a row or a model
    object)."""

    @property
    def id(self) -> int: ...

    @property
    def nonce(self) -> str: ...

    @property
    def unsubscribe_key(self) -> str: ...


# The token of the unsubscribe link in previews and test sends: it answers, and acts on nobody.
EXAMPLE_TOKEN = "example-link-for-preview-only"


def new_nonce() -> str:
    """A fresh per-subscriber nonce."""
    return new_link_key()


def _secret_of(purpose: Purpose, subscriber: TokenOwner) -> str:
    """What a link of this purpose binds besides the id: the nonce, which address changes and
    unsubscribing replace (killing the links), or for unsubscribe links the key that stays."""
    return subscriber.unsubscribe_key if purpose is Purpose.UNSUBSCRIBE else subscriber.nonce


def _keys() -> tuple[str, ...]:
    config = current_app.config
    # itsdangerous signs with the last key and accepts all of them.
    return (*config.get("SECRET_KEY_FALLBACKS", []), config["SECRET_KEY"])


def _serializer(purpose: Purpose) -> URLSafeTimedSerializer:
    return _signing(_keys(), purpose)[0]


@functools.lru_cache(maxsize=64)
def _signing(
    keys: tuple[str, ...], purpose: Purpose
) -> tuple[URLSafeTimedSerializer, TimestampSigner]:
    """The serializer and its signer, made once per key set and purpose: a digest signs two
    links for each of its recipients."""
    serializer = URLSafeTimedSerializer(list(keys), salt=f"mailer.{purpose.value}")
    signer = serializer.make_signer()
    assert isinstance(signer, TimestampSigner)
    return serializer, signer


def make_token(purpose: Purpose, subscriber: TokenOwner, film_id: int | None = None) -> str:
    """A signed, opaque token for ``subscriber`` (never containing the address)."""
    payload: list[int | str] = [subscriber.id, _secret_of(purpose, subscriber)]
    if film_id is not None:
        payload.append(film_id)
    # What serializer.dumps() does, with the signer made once.
    serializer, signer = _signing(_keys(), purpose)
    return signer.sign(serializer.dump_payload(payload)).decode("ascii")


def _is_row_id(value: object) -> bool:
    """Whether a payload value can name a row: an int (not a bool) within the database's range."""
    return type(value) is int and 1 <= value <= MAX_ID


def _claims(payload: object) -> TokenClaims:
    # An id no row can have must never reach a query (PostgreSQL and SQLite refuse it loudly).
    if (
        not isinstance(payload, list)
        or len(payload) not in (2, 3)
        or not isinstance(payload[1], str)
    ):
        raise InvalidToken("malformed payload")
    if not _is_row_id(payload[0]) or (len(payload) == 3 and not _is_row_id(payload[2])):
        raise ImpossibleId("the payload names an id no row can have")
    return TokenClaims(payload[0], payload[1], payload[2] if len(payload) == 3 else None)


def max_age_for(purpose: Purpose) -> int | None:
    """How long a token of this purpose is valid, in seconds (None: no age limit)."""
    if purpose is Purpose.CONFIRM or purpose is Purpose.ADDRESS:
        return int(current_app.config["MAILER_CONFIRM_MAX_AGE"])
    return MAX_AGE[purpose]


def read_token(purpose: Purpose, token: str) -> TokenClaims:
    """Verify a token's signature, purpose and age; raise InvalidToken or ExpiredToken."""
    serializer = _serializer(purpose)
    try:
        return _claims(serializer.loads(token, max_age=max_age_for(purpose)))
    except SignatureExpired as exc:
        if exc.payload is None:
            raise InvalidToken("expired, unreadable payload") from None
        raise ExpiredToken(_claims(serializer.load_payload(exc.payload))) from None
    except BadSignature:
        raise InvalidToken("bad signature") from None


def subscriber_for(purpose: Purpose, token: str) -> tuple[Subscriber, TokenClaims]:
    """The subscriber a token belongs to, if its nonce (or unsubscribe key) is still current;
    else InvalidToken."""
    claims = read_token(purpose, token)
    subscriber = db.session.get(Subscriber, claims.subscriber_id)
    if subscriber is None or not secrets.compare_digest(
        _secret_of(purpose, subscriber), claims.nonce
    ):
        raise InvalidToken("link no longer applies")
    return subscriber, claims


def link_at(base_url: str, purpose: Purpose, token: str) -> str:
    """The absolute URL of a link of this purpose: the one shape of every link in mail."""
    return f"{base_url}/{purpose.value}/{token}"


def link(purpose: Purpose, subscriber: TokenOwner, film_id: int | None = None) -> str:
    """The absolute URL (on MAILER_BASE_URL) of a personal link."""
    token = make_token(purpose, subscriber, film_id)
    return link_at(current_app.config["MAILER_BASE_URL"], purpose, token)
