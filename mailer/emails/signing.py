"""DKIM: a signature over the headers that matter, when all three MAILER_DKIM_* are set."""

from __future__ import annotations

import functools
from pathlib import Path

import dkim

from ..backends import SenderMisconfigured
from ..config import MailSettings

DKIM_HEADERS = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
)


def sign(data: bytes, settings: MailSettings) -> bytes:
    """Prefix a DKIM-Signature when MAILER_DKIM_SELECTOR, _DOMAIN and _KEY_FILE are all set."""
    selector, domain = settings.dkim_selector, settings.dkim_domain
    if not (selector and domain and settings.dkim_key_file):
        return data
    key = _private_key(settings.dkim_key_file)
    head = data.split(b"\r\n\r\n", 1)[0].lower()
    present = [h.encode() for h in DKIM_HEADERS if f"\r\n{h.lower()}:".encode() in b"\r\n" + head]
    try:
        signature = dkim.sign(
            data,
            selector.encode(),
            domain.encode(),
            key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=present,
        )
    except dkim.DKIMException as exc:
        raise SenderMisconfigured(f"DKIM signing failed: {exc}") from exc
    return bytes(signature) + data


@functools.cache
def _private_key(key_file: str) -> bytes:
    """The key file's bytes, read once per process (a failure is not remembered)."""
    try:
        return Path(key_file).read_bytes()
    except OSError as exc:
        raise SenderMisconfigured(f"cannot read MAILER_DKIM_KEY_FILE: {exc}") from exc
