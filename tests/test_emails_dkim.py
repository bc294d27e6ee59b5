"""DKIM: a message signed with a test key verifies with dkimpy; tampering breaks it."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask

from mailer.emails.signing import DKIM_HEADERS
from mailer.models import DeliveryKind
from tests.factories import World, render


def test_signature_verifies(app: Flask, world: World, tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    asked: list[bytes] = []

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        asked.append(name)
        return record if name == b"mail2026._domainkey.example.org." else b""

    app.config.update(
        MAILER_DKIM_SELECTOR="mail2026",
        MAILER_DKIM_DOMAIN="example.org",
        MAILER_DKIM_KEY_FILE=str(key_file),
        MAILER_FROM="Documentaries <news@example.org>",
    )
    for kind in (DeliveryKind.DIGEST, DeliveryKind.CONFIRMATION):
        data = render(kind, world).data
        assert data.startswith(b"DKIM-Signature:")
        assert dkim.verify(data, dnsfunc=dnsfunc), kind
        signed = re.search(rb"\bh=([^;]+);", data.split(b"\r\n\r\n", 1)[0].replace(b"\r\n", b""))
        assert signed
        names = {h.strip().lower() for h in signed.group(1).replace(b" ", b"").split(b":")}
        if kind == DeliveryKind.DIGEST:
            assert names == {h.lower().encode() for h in DKIM_HEADERS}
        tampered = data.replace(b"\r\nSubject: ", b"\r\nSubject: Re: ", 1)
        assert not dkim.verify(tampered, dnsfunc=dnsfunc)
    assert asked


def test_no_signature_unless_configured(app: Flask, world: World) -> None:
    assert not render(DeliveryKind.DIGEST, world).data.startswith(b"DKIM-Signature:")
