"""Security headers on every response, and requests no real visitor sends refused early."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from flask import Flask, Response, abort, request

NUL = "\x00"
# Paths whose answers are JSON; their blueprints refuse NUL bytes in their own error shape.
JSON_PREFIXES = ("/api/",)

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' https: data:",
        "frame-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "object-src 'none'",
        "frame-ancestors 'none'",
    ]
)


def add_security_headers(response: Response) -> Response:
    """Deny framing and inline script, keep referrers on the site, and never cache admin pages."""
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if request.path.startswith("/admin"):
        response.headers["Cache-Control"] = "no-store"
    return response


def fields_with_nul(data: Any, name: str = "") -> Iterator[str]:
    """Names of the values (nested in mappings and lists) that hold a NUL byte."""
    if isinstance(data, str):
        if NUL in data:
            yield name or "body"
    elif isinstance(data, Mapping):
        for key, value in data.items():
            key = str(key)
            if NUL in key:
                yield name or "body"
            yield from fields_with_nul(value, f"{name}.{key}" if name else key)
    elif isinstance(data, list | tuple):
        for value in data:
            yield from fields_with_nul(value, name)


def request_fields_with_nul() -> list[str]:
    """Parts of the current request (path, query, form) that hold a NUL byte."""
    found = ["path"] if NUL in request.path else []
    found += fields_with_nul(request.args.to_dict(flat=False))
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        found += fields_with_nul(request.form.to_dict(flat=False))
    return found


def refuse_nul_bytes() -> None:
    """No address, title or form value contains a NUL byte, and PostgreSQL text cannot store one."""
    if request.path.startswith(JSON_PREFIXES):
        return
    if request_fields_with_nul():
        abort(400)


def init_app(app: Flask) -> None:
    """Install the header hook and the request guard."""
    app.before_request(refuse_nul_bytes)
    app.after_request(add_security_headers)
