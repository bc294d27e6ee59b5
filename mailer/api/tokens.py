"""Bearer authentication of API requests: the Authorization header to a live token."""

from __future__ import annotations

from datetime import datetime

from ..api_tokens import ApiTokenRefused, use_api_token
from ..models import ApiToken


class InvalidApiToken(Exception):
    """The request carries no usable API token; the message says why."""

    def __init__(self, message: str, *, presented: bool) -> None:
        """Keep whether a token was presented at all (RFC 6750 answers differ)."""
        super().__init__(message)
        self.presented = presented


def bearer_value(header_value: str | None) -> str | None:
    """The token in an `Authorization: Bearer …` header, or None if there is none."""
    if not header_value:
        return None
    scheme, _, value = header_value.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def authenticate(header_value: str | None, now: datetime) -> ApiToken:
    """The live token named by an Authorization header; raise InvalidApiToken otherwise.

    Records when the token was last used, at most once a minute (the caller commits).
    """
    if not header_value:
        raise InvalidApiToken(
            "No API token: send 'Authorization: Bearer <token>'.", presented=False
        )
    plaintext = bearer_value(header_value)
    if plaintext is None:
        raise InvalidApiToken("The Authorization header must be 'Bearer <token>'.", presented=False)
    try:
        return use_api_token(plaintext, now)
    except ApiTokenRefused as exc:
        raise InvalidApiToken(str(exc), presented=True) from None
