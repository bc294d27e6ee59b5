"""DKIM (RFC 6376, relaxed/relaxed): RSA-SHA256 or Ed25519-SHA256 (RFC 8463), or both."""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

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
_SIGNED = {name.lower().encode(): name.encode() for name in DKIM_HEADERS}
# Runs of space and tab other than a lone space (replacing every lone space too costs ~4x).
_SPACE_RUN = re.compile(rb"(?: [ \t]|\t)[ \t]*")
_FIELD_END = re.compile(rb"\r\n(?![ \t])")
# A value put into pre-hashed body pieces must not change how the text around it canonicalises.
_PLAIN_VALUE = re.compile(r"^[^\s]+$")

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True)
class Signer:
    """One DKIM key: its selector and domain, and which algorithm its key type means."""

    selector: bytes
    domain: bytes
    key: PrivateKey

    @property
    def algorithm(self) -> bytes:
        """The a= tag."""
        return (
            b"ed25519-sha256" if isinstance(self.key, ed25519.Ed25519PrivateKey) else b"rsa-sha256"
        )

    def header(self, signed_fields: Sequence[bytes], names: bytes, body_hash: bytes) -> bytes:
        """The DKIM-Signature field (CRLF-terminated) over these canonical header fields."""
        unsigned = (
            b"DKIM-Signature: v=1; a=" + self.algorithm + b"; c=relaxed/relaxed; d="
            + self.domain + b"; s=" + self.selector + b";\r\n h=" + names
            + b"; bh=" + body_hash + b";\r\n b="
        )  # fmt: skip
        hashed = b"".join(signed_fields) + _relaxed_field(unsigned)
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            # RFC 8463: Ed25519 signs the SHA-256 digest of the header hash input.
            raw = self.key.sign(hashlib.sha256(hashed).digest())
        else:
            raw = self.key.sign(hashed, padding.PKCS1v15(), hashes.SHA256())
        b64 = base64.b64encode(raw)
        folded = b"\r\n  ".join(b64[i : i + 72] for i in range(0, len(b64), 72))
        return unsigned + folded + b"\r\n"


class BodyHasher:
    """The relaxed body hash of a pre-rendered body: fixed pieces canonicalised and hashed once."""

    def __init__(self, chunks: Sequence[bytes | str]) -> None:
        pieces: list[bytes | str] = [
            _relaxed_lines(c) if isinstance(c, bytes) else c for c in chunks
        ]
        last = pieces[-1] if pieces else b""
        # The end rule (no trailing empty lines) must fall inside the last fixed piece.
        if not isinstance(last, bytes) or not last.rstrip(b"\r\n"):
            raise ValueError("the body must end in fixed text")
        pieces[-1] = last.rstrip(b"\r\n") + b"\r\n"
        self._prefix = hashlib.sha256()
        while pieces and isinstance(pieces[0], bytes):
            self._prefix.update(pieces.pop(0))  # type: ignore[arg-type]
        self._rest = tuple(pieces)

    def body_hash(self, values: Mapping[str, str]) -> bytes | None:
        """The bh= value with these slot values in, or None if a value could change the text."""
        if not all(_PLAIN_VALUE.match(values[p]) for p in self._rest if isinstance(p, str)):
            return None
        digest = self._prefix.copy()
        for piece in self._rest:
            digest.update(piece if isinstance(piece, bytes) else values[piece].encode("ascii"))
        return base64.b64encode(digest.digest())


def signing_enabled(settings: MailSettings) -> bool:
    """Whether messages get a DKIM-Signature."""
    return bool(settings.dkim_selector and settings.dkim_domain and settings.dkim_key_file)


def sign(data: bytes, settings: MailSettings, body_hash: bytes | None = None) -> bytes:
    """Prefix one DKIM-Signature per configured key (RSA or Ed25519, and an extra Ed25519 one)."""
    if not signing_enabled(settings):
        return data
    signers = _signers(
        settings.dkim_selector,
        settings.dkim_domain,
        settings.dkim_key_file,
        settings.dkim_ed25519_selector,
        settings.dkim_ed25519_key_file,
    )
    head, _, body = data.partition(b"\r\n\r\n")
    if body_hash is None:
        body_hash = base64.b64encode(hashlib.sha256(_relaxed_body(body)).digest())
    fields = _last_fields(head)
    present = [name for name in _SIGNED if name in fields]
    if b"from" not in present:
        raise SenderMisconfigured("DKIM signing failed: the message has no From header")
    signed_fields = [_relaxed_field(fields[name]) + b"\r\n" for name in present]
    names = b":".join(_SIGNED[name] for name in present)
    return b"".join(s.header(signed_fields, names, body_hash) for s in signers) + data


def _last_fields(head: bytes) -> dict[bytes, bytes]:
    """Each header field by lower-case name; of repeated ones the last, which verifiers take."""
    fields: dict[bytes, bytes] = {}
    for field in _FIELD_END.split(head):
        name = field.split(b":", 1)[0].strip().lower()
        fields[name] = field
    return fields


def _relaxed_field(field: bytes) -> bytes:
    """RFC 6376 3.4.2: lower-case name, unfolded value, runs of space as one, no edge spaces."""
    name, _, value = field.partition(b":")
    value = _SPACE_RUN.sub(b" ", value.replace(b"\r\n", b"")).strip(b" ")
    return name.strip(b" \t").lower() + b":" + value


def _relaxed_body(body: bytes) -> bytes:
    """RFC 6376 3.4.4: no trailing space on lines, runs of space as one, no trailing empty lines."""
    body = _relaxed_lines(body).rstrip(b"\r\n")
    return body + b"\r\n" if body else b""


def _relaxed_lines(text: bytes) -> bytes:
    """Runs of space as one, then none before a line break (so only a single space is left)."""
    return _SPACE_RUN.sub(b" ", text).replace(b" \r\n", b"\r\n")


@functools.cache
def _signers(
    selector: str, domain: str, key_file: str, ed_selector: str, ed_key_file: str
) -> tuple[Signer, ...]:
    """The configured keys, read and parsed once per process (a failure is not remembered)."""
    signers = [Signer(selector.encode(), domain.encode(), private_key(key_file))]
    if ed_selector and ed_key_file:
        signers.append(Signer(ed_selector.encode(), domain.encode(), private_key(ed_key_file)))
    return tuple(signers)


def private_key(key_file: str) -> PrivateKey:
    """An unencrypted PEM RSA or Ed25519 private key, or SenderMisconfigured saying why not."""
    try:
        key = serialization.load_pem_private_key(Path(key_file).read_bytes(), password=None)
    except OSError as exc:
        raise SenderMisconfigured(f"cannot read DKIM key {key_file}: {exc}") from exc
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise SenderMisconfigured(f"DKIM key {key_file} is not an unencrypted PEM key") from exc
    if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise SenderMisconfigured(f"DKIM key {key_file} is neither RSA nor Ed25519")
    return key
