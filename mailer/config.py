"""Settings: every MAILER_* environment variable is read here, with its documented default."""

from __future__ import annotations

import math
import os
import re
import secrets
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from apscheduler.triggers.cron import CronTrigger
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from flask import current_app
from limits import parse_many
from sqlalchemy.engine import make_url

from .provider_events import sendgrid_public_key

MIN_SECRET_BYTES = 32
Number = TypeVar("Number", int, float)


class ConfigError(RuntimeError):
    """The configuration cannot work; the message says how to fix it."""


def _int(env: Mapping[str, str], name: str, default: int, *, least: int = 0) -> int:
    """A whole number of at least ``least``."""
    return _number(env, name, default, int, lambda n: n >= least, f"a whole number >= {least}")


def _float(env: Mapping[str, str], name: str, default: float, *, positive: bool = False) -> float:
    """A finite number, not negative (and not zero when ``positive``)."""
    if positive:
        return _number(env, name, default, float, lambda n: 0 < n < math.inf, "a number above 0")
    return _number(env, name, default, float, lambda n: 0 <= n < math.inf, "a number, 0 or more")


def _number(
    env: Mapping[str, str],
    name: str,
    default: Number,
    parse: Callable[[str], Number],
    accept: Callable[[Number], bool],
    wanted: str,
) -> Number:
    """The variable parsed and accepted, the default when unset or blank, else a ConfigError."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = parse(raw)
    except ValueError:
        value = None
    # NaN fails every comparison, so ``accept`` refuses it too.
    if value is None or not accept(value):
        raise ConfigError(f"{name} must be {wanted}, got {raw!r}")
    return value


def _checked(name: str, value: str, check: Callable[[str], object], hint: str) -> str:
    """The value, if ``check`` accepts it (a non-empty value only); else a ConfigError."""
    if value:
        try:
            check(value)
        except Exception as exc:  # each library refuses in its own way
            raise ConfigError(f"{name}: {value!r} is not valid ({exc}); {hint}") from None
    return value


def _rate_limit(env: Mapping[str, str], name: str, default: str) -> str:
    """A rate limit in the notation of ``limits``, several joined by ";"."""
    hint = "write it like '300 per minute', or '10 per minute;50 per hour' for several"
    return _checked(name, env.get(name) or default, parse_many, hint)


def _address(value: str) -> None:
    """Refuse what is not one plain e-mail address (an optional display name allowed)."""
    if any(ord(c) < 32 for c in value):
        raise ValueError("line breaks and control characters are not allowed")
    _, address = parseaddr(value)
    local, _at, domain = address.rpartition("@")
    if not (local and domain) or " " in address:
        raise ValueError("no address in it")


def _base_url(value: str) -> None:
    """Refuse what is not an absolute http(s) URL."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http:// or https:// URL with a host")


def _mailbox_url(value: str) -> None:
    """Refuse a mailbox URL that `mailer bounces fetch` cannot read."""
    parts = urlsplit(value)
    if parts.scheme not in ("imaps", "imap", "maildir"):
        raise ValueError("not imaps://, imap:// (STARTTLS) or maildir://")
    if parts.scheme != "maildir" and not parts.hostname:
        raise ValueError("no host")


def _database_url(value: str) -> None:
    """Refuse a URL SQLAlchemy cannot parse or has no driver for."""
    make_url(value).get_dialect()


def _schedule(value: str) -> None:
    """Refuse what is not a cron expression (five fields, or six with seconds first)."""
    recurring_trigger(value, "UTC")


def _address_free_header(value: str) -> None:
    """Refuse line breaks and control characters in a value that goes into a header."""
    if any(ord(c) < 32 or c == "\x7f" for c in value):
        raise ValueError("line breaks and control characters are not allowed")


def _dkim(env: Mapping[str, str]) -> None:
    """All three DKIM settings or none, keys that parse, a second Ed25519 key only beside RSA."""
    names = ("MAILER_DKIM_SELECTOR", "MAILER_DKIM_DOMAIN", "MAILER_DKIM_KEY_FILE")
    given = [n for n in names if env.get(n)]
    if given and len(given) < len(names):
        missing = ", ".join(n for n in names if n not in given)
        raise ConfigError(f"{given[0]} is set but {missing} is not: set all three, or none")
    key_type = _dkim_key("MAILER_DKIM_KEY_FILE", env.get("MAILER_DKIM_KEY_FILE", ""))
    second = ("MAILER_DKIM_ED25519_SELECTOR", "MAILER_DKIM_ED25519_KEY_FILE")
    given = [n for n in second if env.get(n)]
    if not given:
        return
    if len(given) < len(second) or key_type != "rsa":
        raise ConfigError(
            f"{given[0]}: a second, Ed25519 signature needs MAILER_DKIM_ED25519_SELECTOR, "
            "MAILER_DKIM_ED25519_KEY_FILE and an RSA key in MAILER_DKIM_KEY_FILE"
        )
    if _dkim_key(second[1], env[second[1]]) != "ed25519":
        raise ConfigError(f"{second[1]}: give an Ed25519 PEM private key")


def _dkim_key(name: str, key_file: str) -> str:
    """'rsa' or 'ed25519' for a readable, unencrypted PEM private key; '' when unset."""
    if not key_file:
        return ""
    if not os.access(key_file, os.R_OK):
        raise ConfigError(f"{name}: cannot read {key_file}; give the path of the PEM private key")
    try:
        key = serialization.load_pem_private_key(Path(key_file).read_bytes(), password=None)
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm):
        key = None
    if isinstance(key, rsa.RSAPrivateKey):
        return "rsa"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    raise ConfigError(f"{name}: {key_file} is not an unencrypted PEM RSA or Ed25519 private key")


SNS_TOPIC_ARN = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?")
WEBHOOK_SECRET_MIN = 16


def _sns_topics(env: Mapping[str, str]) -> list[str]:
    """MAILER_WEBHOOK_SES_TOPICS: the SNS topic ARNs whose SES notifications are taken in."""
    topics = [t.strip() for t in env.get("MAILER_WEBHOOK_SES_TOPICS", "").split(",") if t.strip()]
    for topic in topics:
        if not SNS_TOPIC_ARN.fullmatch(topic):
            raise ConfigError(
                f"MAILER_WEBHOOK_SES_TOPICS: {topic!r} is not an SNS topic ARN; list ARNs like "
                "arn:aws:sns:eu-west-1:123456789012:ses-bounces, separated by commas"
            )
    return topics


def _webhook_secret(value: str) -> None:
    """Refuse a webhook secret too short to resist guessing, or with spaces in it."""
    if len(value) < WEBHOOK_SECRET_MIN or any(c.isspace() for c in value):
        raise ValueError(f"at least {WEBHOOK_SECRET_MIN} characters and no spaces")


def _basic_credentials(value: str) -> None:
    """Refuse what is not user:password with a password hard to guess."""
    user, colon, password = value.partition(":")
    if not (user and colon):
        raise ValueError("not user:password")
    _webhook_secret(password)


def _sendgrid_key(value: str) -> None:
    """Refuse what is not SendGrid's verification key (a base64 ECDSA P-256 public key)."""
    sendgrid_public_key(value)


def _secret_key(env: Mapping[str, str], environment: str, instance_path: Path) -> str:
    """The signing key: required in production, generated once and kept in development."""
    key = env.get("MAILER_SECRET_KEY", "")
    if key:
        if len(key.encode()) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"MAILER_SECRET_KEY is {len(key.encode())} bytes; it must be at least "
                f"{MIN_SECRET_BYTES}. Make one with: "
                "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )
        return key
    if environment == "production":
        raise ConfigError(
            "MAILER_SECRET_KEY is not set. In production it must be at least "
            f"{MIN_SECRET_BYTES} bytes. Make one with: "
            "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )
    key_file = instance_path / "secret_key"
    if key_file.exists():
        return key_file.read_text().strip()
    instance_path.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    return key


def load_settings(env: Mapping[str, str], instance_path: Path) -> dict[str, Any]:
    """Build the Flask config mapping from environment variables."""
    environment = env.get("MAILER_ENV", "production").strip().lower()
    if environment not in ("production", "development"):
        raise ConfigError(f"MAILER_ENV must be 'production' or 'development', got {environment!r}")
    database_url = _checked(
        "MAILER_DATABASE_URL",
        env.get("MAILER_DATABASE_URL") or f"sqlite:///{instance_path / 'mailer.db'}",
        _database_url,
        "use sqlite:///path/to/file.db or postgresql+psycopg://user@host/name",
    )
    mail_url = env.get("MAILER_MAIL_URL") or f"file://{instance_path / 'outbox'}"
    base_url = _checked(
        "MAILER_BASE_URL",
        (env.get("MAILER_BASE_URL") or "http://127.0.0.1:5000").rstrip("/"),
        _base_url,
        "give the public address of the site, e.g. https://news.example.org",
    )
    fallbacks = [k.strip() for k in env.get("MAILER_SECRET_KEY_FALLBACKS", "").split(",")]
    if any(len(k.encode()) < MIN_SECRET_BYTES for k in fallbacks if k):
        raise ConfigError(
            f"MAILER_SECRET_KEY_FALLBACKS: every old key must be at least {MIN_SECRET_BYTES} "
            "bytes; list the keys used before, separated by commas"
        )
    address_hint = "give one address, e.g. news@example.org"
    for name in (
        "MAILER_FROM",
        "MAILER_ENVELOPE_FROM",
        "MAILER_UNSUBSCRIBE_MAILTO",
        "MAILER_BOUNCE_ADDRESS",
    ):
        _checked(name, env.get(name, ""), _address, address_hint)
    _checked(
        "MAILER_LIST_ID",
        env.get("MAILER_LIST_ID", ""),
        _address_free_header,
        "give a name like newsletter.example.org",
    )
    _checked(
        "MAILER_DIGEST_SCHEDULE",
        env.get("MAILER_DIGEST_SCHEDULE", "").strip(),
        _schedule,
        "give a cron expression such as '0 9 * * mon', or leave it empty",
    )
    _checked(
        "MAILER_TIMEZONE",
        env.get("MAILER_TIMEZONE", "UTC"),
        zoneinfo.ZoneInfo,
        "give an IANA zone name such as Europe/London",
    )
    _dkim(env)
    admin_two_factor = env.get("MAILER_ADMIN_2FA", "").strip().lower() or "optional"
    if admin_two_factor not in ("optional", "required"):
        raise ConfigError(
            f"MAILER_ADMIN_2FA must be 'optional' or 'required', got {admin_two_factor!r}"
        )
    _checked(
        "MAILER_WEBHOOK_MAILGUN_KEY",
        env.get("MAILER_WEBHOOK_MAILGUN_KEY", ""),
        _webhook_secret,
        "copy the HTTP webhook signing key from Mailgun's Sending > Webhooks page",
    )
    _checked(
        "MAILER_WEBHOOK_POSTMARK_AUTH",
        env.get("MAILER_WEBHOOK_POSTMARK_AUTH", ""),
        _basic_credentials,
        "give user:password, the same as in the webhook URL set at Postmark",
    )
    _checked(
        "MAILER_WEBHOOK_SENDGRID_KEY",
        env.get("MAILER_WEBHOOK_SENDGRID_KEY", ""),
        _sendgrid_key,
        "copy the verification key of SendGrid's signed event webhook",
    )
    send_rate = _float(env, "MAILER_SEND_RATE", 0.0)
    trusted_proxies = _int(env, "MAILER_TRUSTED_PROXIES", 0)
    return {
        "MAILER_ENV": environment,
        "DEBUG": False,
        "SECRET_KEY": _secret_key(env, environment, instance_path),
        "SECRET_KEY_FALLBACKS": [k for k in fallbacks if k],
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "MAILER_MAIL_URL": mail_url,
        "MAILER_BASE_URL": base_url,
        "PREFERRED_URL_SCHEME": "https" if base_url.startswith("https://") else "http",
        "SESSION_COOKIE_SECURE": base_url.startswith("https://"),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "MAILER_FROM": env.get("MAILER_FROM") or "Documentaries <newsletter@localhost>",
        "MAILER_POSTAL_ADDRESS": env.get("MAILER_POSTAL_ADDRESS", ""),
        "MAILER_SEND_RATE": send_rate,
        "MAILER_TRUSTED_PROXIES": trusted_proxies,
        "MAILER_SMTP_CONNECTIONS": _int(env, "MAILER_SMTP_CONNECTIONS", 1, least=1),
        "MAILER_CONFIRM_MAX_AGE": _int(env, "MAILER_CONFIRM_MAX_AGE", 172800, least=1),
        "MAILER_CONFIRM_RESEND_INTERVAL": _int(env, "MAILER_CONFIRM_RESEND_INTERVAL", 600),
        "MAILER_PURGE_UNCONFIRMED_DAYS": _int(env, "MAILER_PURGE_UNCONFIRMED_DAYS", 30),
        "MAILER_RETRY_DEADLINE": _int(env, "MAILER_RETRY_DEADLINE", 3 * 24 * 3600, least=1),
        # Sending engine tuning; the defaults suit production, tests shorten them.
        "MAILER_RETRY_DELAY": _float(env, "MAILER_RETRY_DELAY", 60.0, positive=True),
        "MAILER_LEASE_SECONDS": _float(env, "MAILER_LEASE_SECONDS", 300.0, positive=True),
        "MAILER_SEND_BATCH": _int(env, "MAILER_SEND_BATCH", 500, least=1),
        "MAILER_PAUSE_AFTER_CONNECTION_ERRORS": _int(
            env, "MAILER_PAUSE_AFTER_CONNECTION_ERRORS", 10, least=1
        ),
        # Outgoing webhooks: each attempt's time limit, the first retry's delay, when to give up.
        "MAILER_WEBHOOK_TIMEOUT": _float(env, "MAILER_WEBHOOK_TIMEOUT", 10.0, positive=True),
        "MAILER_WEBHOOK_RETRY_DELAY": _float(
            env, "MAILER_WEBHOOK_RETRY_DELAY", 60.0, positive=True
        ),
        "MAILER_WEBHOOK_RETRY_DEADLINE": _int(
            env, "MAILER_WEBHOOK_RETRY_DEADLINE", 3 * 24 * 3600, least=1
        ),
        "MAILER_DIGEST_SCHEDULE": env.get("MAILER_DIGEST_SCHEDULE", ""),
        "MAILER_TIMEZONE": env.get("MAILER_TIMEZONE", "UTC"),
        "MAILER_RATELIMIT_STORAGE_URL": env.get("MAILER_RATELIMIT_STORAGE_URL", "memory://"),
        "RATELIMIT_STORAGE_URI": env.get("MAILER_RATELIMIT_STORAGE_URL", "memory://"),
        "MAILER_API_RATE_LIMIT": _rate_limit(env, "MAILER_API_RATE_LIMIT", "300 per minute"),
        "MAILER_SUBSCRIBE_LIMIT_PER_IP": _rate_limit(
            env, "MAILER_SUBSCRIBE_LIMIT_PER_IP", "10 per minute;50 per hour"
        ),
        "MAILER_SUBSCRIBE_LIMIT_PER_ADDRESS": _rate_limit(
            env, "MAILER_SUBSCRIBE_LIMIT_PER_ADDRESS", "5 per hour;20 per day"
        ),
        "MAILER_RESEND_LIMIT_PER_IP": _rate_limit(env, "MAILER_RESEND_LIMIT_PER_IP", "10 per hour"),
        "MAILER_API_MAX_BODY": _int(env, "MAILER_API_MAX_BODY", 64 * 1024, least=1),
        "MAILER_LIST_ID": env.get("MAILER_LIST_ID", ""),
        "MAILER_UNSUBSCRIBE_MAILTO": env.get("MAILER_UNSUBSCRIBE_MAILTO", ""),
        "MAILER_ENVELOPE_FROM": env.get("MAILER_ENVELOPE_FROM", ""),
        # Bounces: the VERP return address, the soft-bounce policy, the mailbox to fetch.
        "MAILER_BOUNCE_ADDRESS": env.get("MAILER_BOUNCE_ADDRESS", "").strip(),
        "MAILER_BOUNCE_SOFT_SCORE": _int(env, "MAILER_BOUNCE_SOFT_SCORE", 5, least=1),
        "MAILER_BOUNCE_SOFT_DAYS": _int(env, "MAILER_BOUNCE_SOFT_DAYS", 7, least=1),
        "MAILER_BOUNCE_MAILBOX": _checked(
            "MAILER_BOUNCE_MAILBOX",
            env.get("MAILER_BOUNCE_MAILBOX", "").strip(),
            _mailbox_url,
            "e.g. imaps://USER:PASS@imap.example.org/INBOX or maildir:///var/mail/bounces",
        ),
        "MAILER_DKIM_SELECTOR": env.get("MAILER_DKIM_SELECTOR", ""),
        "MAILER_DKIM_DOMAIN": env.get("MAILER_DKIM_DOMAIN", ""),
        "MAILER_DKIM_KEY_FILE": env.get("MAILER_DKIM_KEY_FILE", ""),
        "MAILER_DKIM_ED25519_SELECTOR": env.get("MAILER_DKIM_ED25519_SELECTOR", ""),
        "MAILER_DKIM_ED25519_KEY_FILE": env.get("MAILER_DKIM_ED25519_KEY_FILE", ""),
        "MAILER_LOAD_FILMS": env.get("MAILER_LOAD_FILMS", ""),
        # "required": owners cannot use the admin until they have set up two-factor sign-in.
        "MAILER_ADMIN_2FA": admin_two_factor,
        # Provider webhooks (POST /webhooks/<provider>): each is off until its secret is set.
        "MAILER_WEBHOOK_SES_TOPICS": _sns_topics(env),
        "MAILER_WEBHOOK_MAILGUN_KEY": env.get("MAILER_WEBHOOK_MAILGUN_KEY", ""),
        "MAILER_WEBHOOK_POSTMARK_AUTH": env.get("MAILER_WEBHOOK_POSTMARK_AUTH", ""),
        "MAILER_WEBHOOK_SENDGRID_KEY": env.get("MAILER_WEBHOOK_SENDGRID_KEY", ""),
        "MAX_CONTENT_LENGTH": 2 * 1024 * 1024,
        "WTF_CSRF_TIME_LIMIT": None,
    }


def settings_from_environ(instance_path: Path) -> dict[str, Any]:
    """Settings from this process's environment."""
    return load_settings(os.environ, instance_path)


def recurring_trigger(expression: str, timezone: str) -> CronTrigger:
    """The cron schedule; a sixth leading field, if given, is seconds."""
    fields = expression.split()
    if len(fields) == 6:
        second, minute, hour, day, month, day_of_week = fields
        return CronTrigger(
            second=second,
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=day_of_week,
            timezone=timezone,
        )
    return CronTrigger.from_crontab(expression, timezone=timezone)


@dataclass(frozen=True)
class MailSettings:
    """What building mail reads of the settings, read once and handed to the renderers."""

    base_url: str  # MAILER_BASE_URL: every link in mail
    sender: str  # MAILER_FROM
    envelope_from: str  # MAILER_ENVELOPE_FROM; empty: the From address
    list_id: str  # MAILER_LIST_ID; empty: derived from the base URL's host
    unsubscribe_mailto: str  # MAILER_UNSUBSCRIBE_MAILTO; empty: none
    postal_address: str  # MAILER_POSTAL_ADDRESS, in every footer
    dkim_selector: str  # MAILER_DKIM_*: all three set, or no signing
    dkim_domain: str
    dkim_key_file: str  # RSA or Ed25519
    dkim_ed25519_selector: str  # MAILER_DKIM_ED25519_*: a second signature beside an RSA one
    dkim_ed25519_key_file: str
    confirm_max_age: int  # MAILER_CONFIRM_MAX_AGE, in seconds

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MailSettings:
        """Read from a Flask config that load_settings filled."""
        return cls(
            base_url=config["MAILER_BASE_URL"],
            sender=config["MAILER_FROM"],
            envelope_from=config.get("MAILER_ENVELOPE_FROM") or "",
            list_id=config.get("MAILER_LIST_ID") or "",
            unsubscribe_mailto=config.get("MAILER_UNSUBSCRIBE_MAILTO") or "",
            postal_address=config.get("MAILER_POSTAL_ADDRESS") or "",
            dkim_selector=config.get("MAILER_DKIM_SELECTOR") or "",
            dkim_domain=config.get("MAILER_DKIM_DOMAIN") or "",
            dkim_key_file=config.get("MAILER_DKIM_KEY_FILE") or "",
            dkim_ed25519_selector=config.get("MAILER_DKIM_ED25519_SELECTOR") or "",
            dkim_ed25519_key_file=config.get("MAILER_DKIM_ED25519_KEY_FILE") or "",
            confirm_max_age=int(config["MAILER_CONFIRM_MAX_AGE"]),
        )


def mail_settings() -> MailSettings:
    """The running app's mail settings (each sender reads them once, with its render cache)."""
    return MailSettings.from_config(current_app.config)
