"""Settings: every MAILER_* environment variable is read here, with its documented default."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

MIN_SECRET_BYTES = 32


class ConfigError(RuntimeError):
    """The configuration cannot work; the message says how to fix it."""


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


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
    database_url = env.get("MAILER_DATABASE_URL") or f"sqlite:///{instance_path / 'mailer.db'}"
    mail_url = env.get("MAILER_MAIL_URL") or f"file://{instance_path / 'outbox'}"
    base_url = (env.get("MAILER_BASE_URL") or "http://127.0.0.1:5000").rstrip("/")
    fallbacks = [k for k in env.get("MAILER_SECRET_KEY_FALLBACKS", "").split(",") if k.strip()]
    send_rate = _float(env, "MAILER_SEND_RATE", 0.0)
    if send_rate < 0:
        raise ConfigError("MAILER_SEND_RATE must be 0 (unlimited) or a positive number")
    trusted_proxies = _int(env, "MAILER_TRUSTED_PROXIES", 0)
    if trusted_proxies < 0:
        raise ConfigError(
            "MAILER_TRUSTED_PROXIES must be 0 (no reverse proxy) or the number of proxies in "
            f"front of the app, got {trusted_proxies}"
        )
    return {
        "MAILER_ENV": environment,
        "DEBUG": False,
        "SECRET_KEY": _secret_key(env, environment, instance_path),
        "SECRET_KEY_FALLBACKS": [k.strip() for k in fallbacks],
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
        "MAILER_SMTP_CONNECTIONS": _int(env, "MAILER_SMTP_CONNECTIONS", 1),
        "MAILER_CONFIRM_MAX_AGE": _int(env, "MAILER_CONFIRM_MAX_AGE", 172800),
        "MAILER_CONFIRM_RESEND_INTERVAL": _int(env, "MAILER_CONFIRM_RESEND_INTERVAL", 600),
        "MAILER_PURGE_UNCONFIRMED_DAYS": _int(env, "MAILER_PURGE_UNCONFIRMED_DAYS", 30),
        "MAILER_RETRY_DEADLINE": _int(env, "MAILER_RETRY_DEADLINE", 3 * 24 * 3600),
        # Sending engine tuning; the defaults suit production, tests shorten them.
        "MAILER_RETRY_DELAY": _float(env, "MAILER_RETRY_DELAY", 60.0),
        "MAILER_LEASE_SECONDS": _float(env, "MAILER_LEASE_SECONDS", 300.0),
        "MAILER_SEND_BATCH": _int(env, "MAILER_SEND_BATCH", 500),
        "MAILER_PAUSE_AFTER_CONNECTION_ERRORS": _int(
            env, "MAILER_PAUSE_AFTER_CONNECTION_ERRORS", 10
        ),
        "MAILER_DIGEST_SCHEDULE": env.get("MAILER_DIGEST_SCHEDULE", ""),
        "MAILER_TIMEZONE": env.get("MAILER_TIMEZONE", "UTC"),
        "MAILER_RATELIMIT_STORAGE_URL": env.get("MAILER_RATELIMIT_STORAGE_URL", "memory://"),
        "RATELIMIT_STORAGE_URI": env.get("MAILER_RATELIMIT_STORAGE_URL", "memory://"),
        "MAILER_API_RATE_LIMIT": env.get("MAILER_API_RATE_LIMIT") or "300 per minute",
        "MAILER_LIST_ID": env.get("MAILER_LIST_ID", ""),
        "MAILER_UNSUBSCRIBE_MAILTO": env.get("MAILER_UNSUBSCRIBE_MAILTO", ""),
        "MAILER_ENVELOPE_FROM": env.get("MAILER_ENVELOPE_FROM", ""),
        "MAILER_DKIM_SELECTOR": env.get("MAILER_DKIM_SELECTOR", ""),
        "MAILER_DKIM_DOMAIN": env.get("MAILER_DKIM_DOMAIN", ""),
        "MAILER_DKIM_KEY_FILE": env.get("MAILER_DKIM_KEY_FILE", ""),
        "MAILER_LOAD_FILMS": env.get("MAILER_LOAD_FILMS", ""),
        "MAX_CONTENT_LENGTH": 2 * 1024 * 1024,
        "WTF_CSRF_TIME_LIMIT": None,
    }


def settings_from_environ(instance_path: Path) -> dict[str, Any]:
    """Settings from this process's environment."""
    return load_settings(os.environ, instance_path)
