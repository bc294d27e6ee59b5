"""The JSON API under /api/v1 for the site's CMS: bearer tokens, one error shape, OpenAPI."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask_smorest import Api

from ..api_tokens import api_token_cli
from . import bounces, digests, errors, films, subscribers, suppressions
from .errors import PREFIX, ErrorSchema

API_VERSION = "1.0.0"
# Every resource of the API.
RESOURCES = (films.bp, digests.bp, subscribers.bp, suppressions.bp, bounces.bp)


class MailerApi(Api):
    """flask-smorest's Api, documenting our error shape and leaving HTML pages' errors alone."""

    ERROR_SCHEMA = ErrorSchema

    def _register_error_handlers(self) -> None:
        """flask-smorest would answer every error of the whole site; errors.install scopes them."""


def init_app(app: Flask) -> None:
    """Register the API's resources, its OpenAPI document, error handlers and token commands."""
    app.config["OPENAPI_URL_PREFIX"] = PREFIX
    app.config["OPENAPI_JSON_PATH"] = "openapi.json"
    spec_options: dict[str, Any] = {
        "info": {
            "description": "Manage the documentary newsletter: films, digests, subscribers, "
            "suppressions. "
            "Authenticate with 'Authorization: Bearer <token>' (`mailer api-token create NAME`)."
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
    }
    api = MailerApi(
        app,
        spec_kwargs={
            "title": "mailer API",
            "version": API_VERSION,
            "openapi_version": "3.0.3",
            **spec_options,
        },
    )
    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})
    for resource in RESOURCES:
        api.register_blueprint(resource)
    errors.install(app)
    app.cli.add_command(api_token_cli)
