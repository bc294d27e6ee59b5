"""One JSON error shape for everything under the API prefix: status, code, message, field errors."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import Any

import marshmallow as ma
from flask import Flask, Response, jsonify, request
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import HTTPException, InternalServerError

from .. import errors as pages_errors
from ..extensions import db, limiter

log = logging.getLogger(__name__)

PREFIX = "/api/v1"

# A stable, machine-readable name for each status; `code` in the body.
CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "server_error",
}

MESSAGES = {
    400: "The request could not be understood.",
    401: "A valid API token is required: send it as 'Authorization: Bearer <token>'.",
    404: "There is nothing at this address.",
    405: "This method is not allowed here.",
    413: "The request body is too large.",
    415: "The request body must be JSON (Content-Type: application/json).",
    422: "Some fields are not valid.",
    429: "Too many requests for this token; wait a little and try again.",
    500: "Something went wrong on our side.",
}


class ErrorSchema(ma.Schema):
    """The body of every error response (documentation only; see error_response)."""

    status = ma.fields.Integer(required=True, metadata={"description": "HTTP status"})
    code = ma.fields.String(required=True, metadata={"description": "machine-readable reason"})
    message = ma.fields.String(required=True, metadata={"description": "what went wrong"})
    errors = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.List(ma.fields.String()),
        metadata={"description": "field name to what is wrong with it"},
    )


def field_errors(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """Flatten webargs/marshmallow messages ({location: {field: [...]}}) to {field: [...]}."""
    flat: dict[str, list[str]] = {}
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            # The request location (json, query, ...) is not part of a field's name.
            if not prefix and key in ("json", "query", "querystring", "view_args", "headers"):
                name = ""
            flat.update(field_errors(value, name))
    elif isinstance(messages, list | tuple):
        texts = [str(m) for m in messages if not isinstance(m, Mapping | list | tuple)]
        if texts:
            flat.setdefault(prefix or "body", []).extend(texts)
        for nested in (m for m in messages if isinstance(m, Mapping | list | tuple)):
            flat.update(field_errors(nested, prefix))
    else:
        flat.setdefault(prefix or "body", []).append(str(messages))
    return flat


def error_response(
    status: int,
    message: str | None = None,
    *,
    code: str | None = None,
    errors: Mapping[str, list[str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A JSON error response in the API's one shape."""
    body: dict[str, Any] = {
        "status": status,
        "code": code or CODES.get(status, "error"),
        "message": message or MESSAGES.get(status, "The request failed."),
    }
    if errors:
        body["errors"] = dict(errors)
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def handle_http_exception(error: HTTPException) -> Response:
    """Turn any HTTP error (abort, routing, limits, validation) into the JSON shape."""
    status = error.code or 500
    # webargs' abort (used by the views and by request validation) keeps details in `data`.
    data: Mapping[str, Any] = getattr(error, "data", None) or {}
    errors = data.get("errors")
    if errors is None and "messages" in data:
        errors = field_errors(data["messages"])
    message = data.get("message")
    if message is None and status == 400 and errors:
        message = "The request body is not valid JSON."
    headers = {
        name: value
        for name, value in error.get_headers()
        if name.lower() in ("allow", "www-authenticate", "retry-after")
    }
    headers.update(data.get("headers") or {})
    if status == 429 and "Retry-After" not in headers:
        headers["Retry-After"] = str(_retry_after())
    return error_response(status, message, code=data.get("code"), errors=errors, headers=headers)


def _retry_after() -> int:
    """Seconds until the rate limit that was just hit lets requests through again."""
    current = limiter.current_limit
    if current is None:
        return 60
    return max(1, math.ceil(current.reset_at - time.time()))


def handle_unexpected(error: Exception) -> Response:
    """Log a failure the API did not expect and answer a plain JSON 500."""
    if isinstance(error, HTTPException):
        return handle_http_exception(error)
    if isinstance(error, IntegrityError):
        # Two requests raced for the same unique value; the loser may simply retry.
        db.session.rollback()
        return error_response(409, "The request conflicts with a concurrent change; retry it.")
    log.exception("unhandled error on %s %s", request.method, request.path, exc_info=error)
    return handle_http_exception(InternalServerError())


def is_api_request() -> bool:
    """Whether this request is addressed to the JSON API."""
    return request.path == PREFIX or request.path.startswith(PREFIX + "/")


def routing_error(error: HTTPException) -> Response | tuple[str, int]:
    """404 and 405 come before any blueprint is known: answer JSON under the API prefix only."""
    if is_api_request():
        return handle_http_exception(error)
    return pages_errors.render_http_error(error)


def install(app: Flask) -> None:
    """Routing errors under the API prefix answer JSON; resource blueprints do the rest."""
    app.register_error_handler(404, routing_error)
    app.register_error_handler(405, routing_error)
