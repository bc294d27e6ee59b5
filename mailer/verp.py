"""VERP: each message's envelope sender names its delivery, signed so a forged one is ignored."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re

from flask import current_app

from .backends import Message

MAC_LENGTH = 16  # hex digits: 64 bits, far beyond guessing by mail

# bounces+<delivery id>-<mac>@domain: digits and lower-case hex only, as some relays fold case.
_VERP = re.compile(r"^(?P<local>.+)\+(?P<delivery>\d{1,18})-(?P<mac>[0-9a-f]+)$")


def _mac(key: str, delivery_id: int) -> str:
    """The signature of a delivery id, with a key derived from the secret key for this use."""
    derived = hmac.new(key.encode(), b"mailer-verp-return-address", hashlib.sha256).digest()
    return hmac.new(derived, str(delivery_id).encode(), hashlib.sha256).hexdigest()[:MAC_LENGTH]


def bounce_address() -> tuple[str, str] | None:
    """MAILER_BOUNCE_ADDRESS as (local part, domain), or None when VERP is off."""
    configured = current_app.config.get("MAILER_BOUNCE_ADDRESS") or ""
    if not configured:
        return None
    local, _at, domain = configured.rpartition("<")[2].rstrip(">").strip().rpartition("@")
    return local, domain.lower()


def verp_address(delivery_id: int) -> str | None:
    """The signed return address of one delivery, or None when MAILER_BOUNCE_ADDRESS is unset."""
    configured = bounce_address()
    if configured is None:
        return None
    local, domain = configured
    mac = _mac(current_app.config["SECRET_KEY"], delivery_id)
    return f"{local}+{delivery_id}-{mac}@{domain}"


def is_bounce_domain(address: str) -> bool:
    """Whether mail to this address belongs to the bounce domain."""
    configured = bounce_address()
    return configured is not None and address.rpartition("@")[2].lower() == configured[1]


def delivery_of_verp(address: str) -> int | None:
    """The delivery a return address stands for, or None if it is not ours or its MAC is forged.

    Addresses signed with a key listed in MAILER_SECRET_KEY_FALLBACKS still count, so a key
    rotation does not lose the bounces of mail sent before it.
    """
    configured = bounce_address()
    if configured is None:
        return None
    local_part, _at, domain = address.strip().strip("<>").rpartition("@")
    match = _VERP.match(local_part.lower())
    if match is None or domain.lower() != configured[1]:
        return None
    if match["local"] != configured[0].lower():
        return None
    delivery_id = int(match["delivery"])
    config = current_app.config
    keys = [config["SECRET_KEY"], *config.get("SECRET_KEY_FALLBACKS", [])]
    if any(hmac.compare_digest(_mac(key, delivery_id), match["mac"]) for key in keys):
        return delivery_id
    return None


def with_return_path(message: Message, delivery_id: int) -> Message:
    """The message with its delivery's VERP envelope sender (unchanged when VERP is off)."""
    address = verp_address(delivery_id)
    return message if address is None else dataclasses.replace(message, sender=address)
