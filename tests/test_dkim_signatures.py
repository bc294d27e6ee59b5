"""DKIM with RSA, Ed25519 or both: every signature, on the bulk fast path too, verifies with dkimpy
and (RSA) with Perl's Mail::DKIM, the verifier SpamAssassin and Amavis use."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from flask import Flask

from mailer.config import mail_settings
from mailer.emails import RenderCache, render_delivery
from mailer.emails.signing import sign
from mailer.models import DeliveryKind
from tests.factories import WORLD_NOW, World, delivery_for, render

# Mail::DKIM with the key lookup answered from $DKIM_RECORDS ("selector=record" lines), not DNS.
PERL_VERIFIER = r"""
use Mail::DKIM::Verifier;
use Mail::DKIM::PublicKey;
my %records = map { split /=/, $_, 2 } split /\n/, $ENV{DKIM_RECORDS};
no warnings 'redefine';
*Mail::DKIM::PublicKey::fetch_async = sub {
    my ($class, %p) = @_;
    my $key = $class->parse($records{$p{Selector}});
    $key->{Selector} = $p{Selector};
    $key->{Domain} = $p{Domain};
    $key->check;
    my $done = ($p{Callbacks}{Success} || sub { $_[0] })->($key);
    return sub { $done };
};
local $/;
my $verifier = Mail::DKIM::Verifier->new;
$verifier->PRINT(<STDIN>);
$verifier->CLOSE;
print join(" ", map { $_->algorithm . "=" . $_->result } $verifier->signatures), "\n";
"""


def _rsa(path: Path) -> bytes:
    """Write an RSA key; return its DNS record."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


def _ed25519(path: Path) -> bytes:
    """Write an Ed25519 key; return its DNS record (RFC 8463: the raw 32-byte public key)."""
    key = ed25519.Ed25519PrivateKey.generate()
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return b"v=DKIM1; k=ed25519; p=" + base64.b64encode(raw)


def _digests_for_two_readers(world: World) -> list[bytes]:
    """Both readers' digests through one render cache, so both take the pre-rendered fast path."""
    cache = RenderCache()
    messages = [
        render_delivery(delivery_for(DeliveryKind.DIGEST, world, reader), reader, cache, WORLD_NOW)
        for reader in (world.fan, world.plain)
    ]
    assert cache.fast_renders == 2
    return [m.data for m in messages]


@pytest.mark.parametrize("keys", ["rsa", "ed25519", "rsa+ed25519"])
def test_every_signature_verifies_with_dkimpy(
    app: Flask, world: World, tmp_path: Path, keys: str
) -> None:
    records: dict[bytes, bytes] = {}
    first = tmp_path / "first.pem"
    records[b"one"] = _rsa(first) if keys.startswith("rsa") else _ed25519(first)
    app.config.update(
        MAILER_DKIM_SELECTOR="one",
        MAILER_DKIM_DOMAIN="example.org",
        MAILER_DKIM_KEY_FILE=str(first),
        MAILER_FROM="Documentaries <news@example.org>",
    )
    if keys == "rsa+ed25519":
        second = tmp_path / "second.pem"
        records[b"two"] = _ed25519(second)
        app.config.update(
            MAILER_DKIM_ED25519_SELECTOR="two", MAILER_DKIM_ED25519_KEY_FILE=str(second)
        )

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        return records.get(name.removesuffix(b"._domainkey.example.org."), b"")

    def verifies(data: bytes, index: int) -> bool:
        try:
            return bool(dkim.DKIM(data).verify(idx=index, dnsfunc=dnsfunc))
        except dkim.DKIMException:
            return False

    messages = _digests_for_two_readers(world)
    messages.append(render(DeliveryKind.CONFIRMATION, world).data)
    for data in messages:
        assert data.count(b"DKIM-Signature:") == len(records)
        for index in range(len(records)):
            assert verifies(data, index), (keys, index)
            tampered = data.replace(b"\r\nSubject: ", b"\r\nSubject: Re: ", 1)
            assert not verifies(tampered, index)
            head, _, body = data.partition(b"\r\n\r\n")
            body_changed = head + b"\r\n\r\n" + body.replace(b"</p>", b"</p>.", 1)
            assert not verifies(body_changed, index)
    algorithms = {b"rsa": [b"rsa-sha256"], b"ed25519": [b"ed25519-sha256"]}
    expected = [a for part in keys.encode().split(b"+") for a in algorithms[part]]
    tags = [line.split(b"; a=")[1] for line in messages[0].split(b"\r\n") if b"; a=" in line]
    assert [tag.split(b";")[0] for tag in tags] == expected


def test_rsa_signatures_verify_with_mail_dkim(app: Flask, world: World, tmp_path: Path) -> None:
    key_file = tmp_path / "dkim.pem"
    record = _rsa(key_file)
    app.config.update(
        MAILER_DKIM_SELECTOR="mail2026",
        MAILER_DKIM_DOMAIN="example.org",
        MAILER_DKIM_KEY_FILE=str(key_file),
        MAILER_FROM="Documentaries <news@example.org>",
    )
    env = {"DKIM_RECORDS": "mail2026=" + record.decode(), "PATH": "/usr/bin:/bin"}
    for data in _digests_for_two_readers(world):
        verdict = subprocess.run(
            ["perl", "-e", PERL_VERIFIER], input=data, env=env, capture_output=True, check=True
        )
        assert verdict.stdout.split() == [b"rsa-sha256=pass"], verdict
        tampered = data.replace(b"\r\nSubject: ", b"\r\nSubject: Re: ", 1)
        verdict = subprocess.run(
            ["perl", "-e", PERL_VERIFIER], input=tampered, env=env, capture_output=True, check=True
        )
        assert verdict.stdout.split() == [b"rsa-sha256=fail"], verdict


def test_the_pre_hashed_body_equals_the_whole_body_hash(
    app: Flask, world: World, tmp_path: Path
) -> None:
    key_file = tmp_path / "dkim.pem"
    _ed25519(key_file)  # Ed25519 signatures are deterministic: equal input, equal bytes
    app.config.update(
        MAILER_DKIM_SELECTOR="one",
        MAILER_DKIM_DOMAIN="example.org",
        MAILER_DKIM_KEY_FILE=str(key_file),
    )
    for data in _digests_for_two_readers(world):
        unsigned = data[data.index(b"\r\nFrom: ") + 2 :]  # From is the first header we write
        assert sign(unsigned, mail_settings()) == data
