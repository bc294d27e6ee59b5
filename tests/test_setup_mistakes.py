"""Setup mistakes through the real `mailer` script: one clear line, non-zero exit, no traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from flask import Flask
from sqlalchemy import func, select

import mailer.config
from mailer.extensions import db
from mailer.journal import queue_message
from mailer.models import (
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Digest,
    DigestStatus,
    Suppression,
    utcnow,
)
from tests.factories import add_digest, add_subscribers, wait_until
from tests.smtp_server import ScriptedSMTPServer

MAILER = str(Path(sys.executable).with_name("mailer"))
SETUP_ERROR = 2


def run_mailer(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `mailer <args>` with exactly this MAILER_* environment (none inherited)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    return subprocess.run(
        [MAILER, *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_one_line(result: subprocess.CompletedProcess[str], *names: str) -> str:
    """A setup mistake: status 2, no traceback, one `mailer:` line naming the settings."""
    assert result.returncode == SETUP_ERROR, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.startswith("mailer: ")]
    assert len(lines) == 1, result.stderr
    for name in names:
        assert name in lines[0]
    return lines[0]


def test_help_lists_every_command_without_any_setup(app: Flask, tmp_path: Path) -> None:
    """Production with no secret key: `mailer --help` still lists every command, cleanly."""
    result = run_mailer("--help", env={"MAILER_INSTANCE_PATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    listed = set(re.findall(r"^  ([a-z-]+)  ", result.stdout, re.MULTILINE))
    assert set(app.cli.commands) <= listed
    assert {"db", "create-admin", "import-films", "api-token", "worker", "deliver", "run"} <= listed
    # The missing key is said only by a command that needs it.
    assert_one_line(
        run_mailer("deliver", env={"MAILER_INSTANCE_PATH": str(tmp_path)}), "MAILER_SECRET_KEY"
    )


# One bad value for every setting; each must be refused by name when any command starts.
BAD_VALUES = {
    "MAILER_ENV": "staging",
    "MAILER_SECRET_KEY": "short",
    "MAILER_SECRET_KEY_FALLBACKS": "old-and-short",
    "MAILER_DATABASE_URL": "mysql+nodriver://db/mailer",
    "MAILER_MAIL_URL": "carrier-pigeon://x",
    "MAILER_BASE_URL": "news.example.org",
    "MAILER_FROM": "Documentaries",
    "MAILER_SEND_RATE": "fast",
    "MAILER_SMTP_CONNECTIONS": "0",
    "MAILER_TRUSTED_PROXIES": "-1",
    "MAILER_CONFIRM_MAX_AGE": "2d",
    "MAILER_CONFIRM_RESEND_INTERVAL": "-1",
    "MAILER_PURGE_UNCONFIRMED_DAYS": "a month",
    "MAILER_RETRY_DEADLINE": "0",
    "MAILER_RETRY_DELAY": "nan",
    "MAILER_LEASE_SECONDS": "-5",
    "MAILER_SEND_BATCH": "many",
    "MAILER_PAUSE_AFTER_CONNECTION_ERRORS": "0",
    "MAILER_WEBHOOK_TIMEOUT": "0",
    "MAILER_WEBHOOK_RETRY_DELAY": "soon",
    "MAILER_WEBHOOK_RETRY_DEADLINE": "3d",
    "MAILER_DIGEST_SCHEDULE": "every monday",
    "MAILER_TIMEZONE": "Mars/Olympus_Mons",
    "MAILER_RATELIMIT_STORAGE_URL": "carrier-pigeon://loft",
    "MAILER_API_RATE_LIMIT": "lots",
    "MAILER_API_MAX_BODY": "64k",
    "MAILER_SUBSCRIBE_LIMIT_PER_IP": "ten a minute",
    "MAILER_SUBSCRIBE_LIMIT_PER_ADDRESS": "5 an hour",
    "MAILER_RESEND_LIMIT_PER_IP": "often",
    "MAILER_LIST_ID": "news\r\nBcc: everyone@example.org",
    "MAILER_UNSUBSCRIBE_MAILTO": "not an address",
    "MAILER_ENVELOPE_FROM": "bounces",
    "MAILER_BOUNCE_ADDRESS": "bounces",
    "MAILER_BOUNCE_SOFT_SCORE": "0",
    "MAILER_BOUNCE_SOFT_DAYS": "a week",
    "MAILER_BOUNCE_MAILBOX": "pop3://mail.example.org",
    "MAILER_DKIM_SELECTOR": "mail2026",
    "MAILER_DKIM_DOMAIN": "example.org",
    "MAILER_DKIM_KEY_FILE": "/nonexistent/dkim.pem",
    "MAILER_WEBHOOK_SES_TOPICS": "ses-bounces",
    "MAILER_WEBHOOK_MAILGUN_KEY": "short",
    "MAILER_WEBHOOK_POSTMARK_AUTH": "postmark-without-a-password",
    "MAILER_WEBHOOK_SENDGRID_KEY": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE",
    "MAILER_DKIM_ED25519_SELECTOR": "ed2026",
    "MAILER_DKIM_ED25519_KEY_FILE": "/nonexistent/ed25519.pem",
    "MAILER_INSTANCE_PATH": "/proc/mailer-instance",
    "MAILER_ADMIN_2FA": "sometimes",
}
# Settings with no value that could be wrong, and why.
NO_BAD_VALUE = {
    "MAILER_POSTAL_ADDRESS": "free text printed in the footer; empty only warns",
    "MAILER_LOAD_FILMS": "read by nothing",
}


def test_every_setting_has_a_bad_value_to_try() -> None:
    source = Path(mailer.config.__file__).read_text() + Path(mailer.__file__).read_text()
    settings = set(re.findall(r'"(MAILER_[A-Z0-9_]+)"', source))
    assert settings == set(BAD_VALUES) | set(NO_BAD_VALUE)


@pytest.mark.parametrize(("name", "value"), sorted(BAD_VALUES.items()))
def test_a_bad_setting_is_one_line_naming_it(
    name: str, value: str, test_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**test_env, "MAILER_ENV": "production", name: value}
    if name == "MAILER_DKIM_KEY_FILE":
        env |= {"MAILER_DKIM_SELECTOR": "mail2026", "MAILER_DKIM_DOMAIN": "example.org"}
    assert_one_line(run_mailer("routes", env=env), name)


def test_half_a_dkim_setup_names_what_is_missing(test_env: dict[str, str], tmp_path: Path) -> None:
    key = tmp_path / "dkim.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    env = {**test_env, "MAILER_DKIM_DOMAIN": "example.org", "MAILER_DKIM_KEY_FILE": str(key)}
    line = assert_one_line(run_mailer("routes", env=env), "MAILER_DKIM_SELECTOR")
    assert "set all three, or none" in line


# The test server asks for a login over plain text, which aiosmtpd rightly warns about.
plain_login = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


@pytest.fixture
def guarded_server() -> Iterator[ScriptedSMTPServer]:
    """An SMTP server that takes mail only from user u with password p."""

    def authenticator(
        server: object, session: object, envelope: object, mechanism: str, data: object
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"u", b"p")
        return AuthResult(success=ok, handled=False)

    server = ScriptedSMTPServer(
        authenticator=authenticator, auth_required=True, auth_require_tls=False
    ).start()
    yield server
    server.stop()


def _digest_and_other_mail(count: int) -> int:
    """A due digest to ``count`` subscribers, and a test send (not a digest) also due."""
    add_subscribers(count, now=utcnow())
    digest_id = add_digest("Locked out", now=utcnow())
    queue_message(
        DeliveryKind.TEST, None, utcnow(), to_address="editor@example.org", digest_id=digest_id
    )
    db.session.commit()
    return digest_id


def _pause_reason(digest_id: int) -> str:
    db.session.rollback()
    digest = db.session.get(Digest, digest_id)
    assert digest is not None
    return digest.pause_reason if digest.status == DigestStatus.PAUSED else ""


@plain_login
def test_deliver_with_a_refused_login_pauses_and_says_why(
    app: Flask, test_env: dict[str, str], guarded_server: ScriptedSMTPServer
) -> None:
    with app.app_context():
        digest_id = _digest_and_other_mail(3)
    url = f"smtp://u:wrong@127.0.0.1:{guarded_server.port}"
    result = run_mailer("deliver", env={**test_env, "MAILER_MAIL_URL": url})
    line = assert_one_line(result, "MAILER_MAIL_URL", "refused the login", "535")
    assert "check the user name and password" in line
    with app.app_context():
        assert "refused the login" in _pause_reason(digest_id)
        statuses = set(db.session.scalars(select(Delivery.status)))
        assert statuses == {DeliveryStatus.QUEUED}, "nothing failed, nothing stays claimed"
        assert db.session.scalar(select(func.count()).select_from(Suppression)) == 0
    assert guarded_server.received == []


@plain_login
def test_the_worker_reports_a_refused_login_once_and_keeps_running(
    app: Flask, test_env: dict[str, str], guarded_server: ScriptedSMTPServer, tmp_path: Path
) -> None:
    with app.app_context():
        digest_id = _digest_and_other_mail(3)
    url = f"smtp://u:wrong@127.0.0.1:{guarded_server.port}"
    log = tmp_path / "worker.log"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [MAILER, "worker", "--processes", "1"],
            env={**clean, **test_env, "MAILER_MAIL_URL": url},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        with app.app_context():
            wait_until(lambda: bool(_pause_reason(digest_id)), 30, "digest paused")
            assert "refused the login" in _pause_reason(digest_id)
        time.sleep(3)  # three more ticks, each refused again for the test send
        assert worker.poll() is None, "the worker keeps running"
    finally:
        worker.terminate()
        worker.wait(timeout=15)
    output = log.read_text()
    assert "Traceback" not in output
    assert output.count("cannot send until the setup is fixed") == 1, output


def _dkim_pem(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey, path: Path) -> str:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(path)


def test_a_key_file_that_is_no_key_is_refused(test_env: dict[str, str], tmp_path: Path) -> None:
    public_only = tmp_path / "public.pem"
    public_only.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    env = {
        **test_env,
        "MAILER_DKIM_SELECTOR": "mail2026",
        "MAILER_DKIM_DOMAIN": "example.org",
        "MAILER_DKIM_KEY_FILE": str(public_only),
    }
    line = assert_one_line(run_mailer("routes", env=env), "MAILER_DKIM_KEY_FILE")
    assert "RSA or Ed25519 private key" in line


def test_the_second_key_must_be_ed25519_beside_rsa(
    test_env: dict[str, str], tmp_path: Path
) -> None:
    rsa_key = _dkim_pem(
        rsa.generate_private_key(public_exponent=65537, key_size=2048), tmp_path / "r"
    )
    ed_key = _dkim_pem(ed25519.Ed25519PrivateKey.generate(), tmp_path / "e")
    base = {
        **test_env,
        "MAILER_DKIM_SELECTOR": "mail2026",
        "MAILER_DKIM_DOMAIN": "example.org",
        "MAILER_DKIM_ED25519_SELECTOR": "ed2026",
    }
    two_rsa = {**base, "MAILER_DKIM_KEY_FILE": rsa_key, "MAILER_DKIM_ED25519_KEY_FILE": rsa_key}
    line = assert_one_line(run_mailer("routes", env=two_rsa), "MAILER_DKIM_ED25519_KEY_FILE")
    assert "Ed25519" in line
    two_ed = {**base, "MAILER_DKIM_KEY_FILE": ed_key, "MAILER_DKIM_ED25519_KEY_FILE": ed_key}
    assert_one_line(run_mailer("routes", env=two_ed), "MAILER_DKIM_ED25519_SELECTOR")
    fine = {**base, "MAILER_DKIM_KEY_FILE": rsa_key, "MAILER_DKIM_ED25519_KEY_FILE": ed_key}
    assert run_mailer("routes", env=fine).returncode == 0
