"""Security headers on every response, and requests no real visitor sends refused early."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import IO, TYPE_CHECKING, Any

from flask import Flask, Response, abort, request
from werkzeug.exceptions import BadRequest, HTTPException

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

NUL = "\x00"
NUL_MESSAGE = "Text may not contain NUL (\\u0000) characters."
# JSON's \ud800 escapes decode to lone surrogates, which no UTF-8 database can store.
SURROGATE_MESSAGE = "Text may not contain unpaired surrogates (\\ud800 to \\udfff)."
_SURROGATE = re.compile("[\ud800-\udfff]")
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


def unstorable(text: str) -> str | None:
    """Why no database text column can hold ``text`` (a NUL, an unpaired surrogate), or None."""
    if NUL in text:
        return NUL_MESSAGE
    if _SURROGATE.search(text):
        return SURROGATE_MESSAGE
    return None


def unstorable_fields(data: Any, name: str = "") -> Iterator[tuple[str, str]]:
    """(name, problem) of the values and keys, nested in mappings and lists, that no database
    text column can hold; a bad key or list item is named by its parent."""
    if isinstance(data, str):
        problem = unstorable(data)
        if problem:
            yield name or "body", problem
    elif isinstance(data, Mapping):
        for key, value in data.items():
            key = str(key)
            problem = unstorable(key)
            if problem:
                yield name or "body", problem
                continue  # a key that cannot be stored cannot name its value either
            yield from unstorable_fields(value, f"{name}.{key}" if name else key)
    elif isinstance(data, list | tuple):
        for value in data:
            yield from unstorable_fields(value, name)


def fields_with_nul(data: Any, name: str = "") -> Iterator[str]:
    """Names of the values (nested in mappings and lists) that hold a NUL byte."""
    for field, problem in unstorable_fields(data, name):
        if problem == NUL_MESSAGE:
            yield field


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


class MalformedBody(BadRequest):
    """The request body cannot be read as sent: its chunked encoding is broken."""

    description = "The request body is not well-formed."


class CheckedInput:
    """``wsgi.input`` whose read errors are a 400, not a 500.

    Servers decode a chunked body as the application reads it and raise at the first malformed
    chunk, wherever the body is read (the form parser, the CSRF check, the JSON API's guard),
    each its own exception: gunicorn's InvalidChunkSize or ChunkMissingTerminator (plain
    Exceptions), its NoMoreData and werkzeug's "Invalid chunk header" (OSError). Whatever the
    server's stream raises, the body could not be read as sent.
    """

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        """Read like the server's stream."""
        return self._checked(self._stream.read, size)

    def readline(self, size: int = -1) -> bytes:
        """Read one line like the server's stream."""
        return self._checked(self._stream.readline, size)

    @staticmethod
    def _checked(read: Callable[[int], bytes], size: int) -> bytes:
        """Call the server's read, turning its decoding error into MalformedBody."""
        try:
            return read(size)
        except HTTPException:
            raise
        except Exception as exc:
            raise MalformedBody() from exc

    def __iter__(self) -> Iterator[bytes]:
        """The body line by line."""
        return iter(self.readline, b"")


class CheckedInputMiddleware:
    """Wrap every request's ``wsgi.input`` in CheckedInput."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Serve the request with its body checked."""
        if "wsgi.input" in environ:
            environ["wsgi.input"] = CheckedInput(environ["wsgi.input"])
        return self.app(environ, start_response)


def init_app(app: Flask) -> None:
    """Install the body check, the header hook and the request guard."""
    app.wsgi_app = CheckedInputMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    app.before_request(refuse_nul_bytes)
    app.after_request(add_security_headers)
