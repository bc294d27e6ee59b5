"""mailer: the newsletter and early-access mailing service of a documentary website."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from limits.errors import ConfigurationError
from werkzeug.middleware.proxy_fix import ProxyFix

from . import (
    admin,
    api,
    archive,
    backends,
    early_access,
    embed,
    errors,
    films,
    i18n,
    pages,
    routing,
    scheduler,
    security,
    subscriptions,
    webhook_intake,
)
from .config import ConfigError, settings_from_environ
from .extensions import csrf, db, limiter, migrate
from .paths import MIGRATIONS_DIR, STATIC_DIR, TEMPLATES_DIR


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the web application: settings, extensions, mail backend, blueprints, commands."""
    app = Flask(
        __name__,
        template_folder=str(TEMPLATES_DIR),
        static_folder=str(STATIC_DIR),
        instance_path=_instance_path(),
    )
    configure(app, test_config)
    trust_proxies(app)
    routing.init_app(app)
    register_extensions(app)
    register_features(app)
    return app


def _instance_path() -> str:
    """The instance folder: MAILER_INSTANCE_PATH, else ./instance where the service is run."""
    return str(Path(os.environ.get("MAILER_INSTANCE_PATH") or Path.cwd() / "instance").resolve())


def configure(app: Flask, test_config: Mapping[str, Any] | None) -> None:
    """Load settings from the environment, then any overrides given by tests."""
    try:
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"MAILER_INSTANCE_PATH: cannot use {app.instance_path} ({exc.strerror}); "
            "give a folder this user may write to"
        ) from None
    app.config.from_mapping(settings_from_environ(Path(app.instance_path)))
    if test_config:
        app.config.from_mapping(test_config)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def trust_proxies(app: Flask) -> None:
    """Behind MAILER_TRUSTED_PROXIES reverse proxies, take the visitor's address (per-IP limits,
    consent records), scheme (https: CSRF's referrer check) and host from the X-Forwarded-For,
    -Proto and -Host those proxies add; with none, the headers are anyone's and are ignored."""
    hops = int(app.config["MAILER_TRUSTED_PROXIES"])
    if hops:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops
        )


def register_extensions(app: Flask) -> None:
    """Bind the shared extension objects to this app."""
    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR), render_as_batch=True)
    csrf.init_app(app)
    i18n.init_app(app)
    try:
        limiter.init_app(app)
    except ConfigurationError as exc:
        raise ConfigError(
            f"MAILER_RATELIMIT_STORAGE_URL: {exc}; use memory:// or redis://host:6379"
        ) from None


def register_features(app: Flask) -> None:
    """Each feature module registers its blueprint, commands and hooks."""
    for module in (
        security,
        errors,
        backends,
        films,
        pages,
        early_access,
        subscriptions,
        scheduler,
        admin,
        api,
        embed,
        archive,
        webhook_intake,
    ):
        module.init_app(app)
