"""The admin console at /admin: accounts, films, digests, subscribers and suppressions."""

from __future__ import annotations

from flask import Flask

from . import (  # noqa: F401 (importing the view modules attaches their routes to bp)
    admins,
    api_tokens,
    auth,
    bounces,
    delivery,
    digests,
    early_access,
    embed_forms,
    films,
    home,
    imports,
    outbox,
    subscriber_actions,
    subscribers,
    two_factor,
    webhooks,
)
from .base import bp, format_local


def init_app(app: Flask) -> None:
    """Register the admin blueprint, sign-in, account commands and template helpers."""
    auth.init_app(app)
    app.register_blueprint(bp)
    app.add_template_filter(format_local, "local_time")
