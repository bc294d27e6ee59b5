"""DKIM: what signing costs per message (dkimpy against ours), and the signed full path against the
unsigned one, same sink, same run."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailer.config import MailSettings
from mailer.emails.signing import BodyHasher, sign

from .common import Row, Sink
from .naive import reference_message
from .ours import send_digest


def write_keys(folder: Path) -> tuple[Path, Path]:
    """A 2048-bit RSA key and an Ed25519 key, as PEM files."""
    paths = folder / "rsa.pem", folder / "ed25519.pem"
    keys = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        (ed25519.Ed25519PrivateKey.generate()),
    )
    for path, key in zip(paths, keys, strict=True):
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return paths


def settings(key_file: Path, second: Path | None = None) -> MailSettings:
    """Mail settings that sign with these keys."""
    return MailSettings(
        base_url="https://bench.example",
        sender="Documentaries <newsletter@bench.example>",
        envelope_from="",
        list_id="",
        unsubscribe_mailto="",
        postal_address="",
        dkim_selector="s1",
        dkim_domain="bench.example",
        dkim_key_file=str(key_file),
        dkim_ed25519_selector="s2" if second else "",
        dkim_ed25519_key_file=str(second or ""),
        confirm_max_age=3600,
    )


def per_message_us(step: Callable[[], object], seconds: float = 1.0) -> float:
    """Microseconds per call, over about `seconds`."""
    step()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        calls += 1
    return (time.perf_counter() - start) / calls * 1e6


def signing_costs(rsa_key: Path, ed_key: Path) -> list[Row]:
    """Per-message signing cost of one rendered digest, each way."""
    data = reference_message()
    body = data.partition(b"\r\n\r\n")[2]
    rsa_settings, ed_settings = settings(rsa_key), settings(ed_key)
    dual = settings(rsa_key, ed_key)
    hasher = BodyHasher((body,))
    prehashed = hasher.body_hash({})
    headers = [b"From", b"To", b"Subject", b"Date", b"Message-ID"]
    ways: list[tuple[str, str, Callable[[], object]]] = [
        ("dkimpy", "dkimpy, RSA-2048 (before)", lambda: dkim.sign(
            data, b"s1", b"bench.example", rsa_key.read_bytes(),
            canonicalize=(b"relaxed", b"relaxed"), include_headers=headers)),
        ("rsa", "ours, RSA-2048, whole body hashed", lambda: sign(data, rsa_settings)),
        ("rsa-prehashed", "ours, RSA-2048, body pre-hashed",
         lambda: sign(data, rsa_settings, prehashed)),
        ("ed25519", "ours, Ed25519, whole body hashed", lambda: sign(data, ed_settings)),
        ("dual", "ours, RSA-2048 + Ed25519", lambda: sign(data, dual)),
    ]  # fmt: skip
    return [
        Row(
            "dkim",
            f"signing: {label}",
            per_message_us(step),
            "µs/msg",
            f"one {len(data) // 1024} KiB digest",
            key=f"dkim-cost:{name}",
        )
        for name, label, step in ways
    ]


def run(sink: Sink, count: int, timeout: float) -> list[Row]:
    """Per-message signing cost, then the full path unsigned, RSA-signed and Ed25519-signed."""
    with tempfile.TemporaryDirectory(prefix="mailer-dkim-") as tmp:
        rsa_key, ed_key = write_keys(Path(tmp))
        rows = signing_costs(rsa_key, ed_key)
        paths = {
            "unsigned": {},
            "rsa": {"MAILER_DKIM_KEY_FILE": str(rsa_key)},
            "ed25519": {"MAILER_DKIM_KEY_FILE": str(ed_key)},
        }
        for name, keys in paths.items():
            env = {"MAILER_DKIM_SELECTOR": "s1", "MAILER_DKIM_DOMAIN": "bench.example"} | keys
            r = send_digest(sink.url, count, 1, timeout, extra_env=env if keys else {})
            rows.append(
                Row(
                    "dkim",
                    f"full path, {name}, 1 connection",
                    count / r["seconds"],
                    "msg/s",
                    f"{count} messages; 1 worker process",
                    r,
                    key=f"dkim:{name}",
                )
            )
    return rows
