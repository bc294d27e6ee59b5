"""Friendly error pages: a clear message and status, never a stack trace."""

from __future__ import annotations

import logging

from flask import Flask, render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger(__name__)

MESSAGES = {
    400: _l("The request could not be understood. Please go back and try again."),
    403: _l("You are not allowed to do that."),
    404: _l("We could not find that page. It may have moved, or the address may be mistyped."),
    405: _l("That page cannot be used this way."),
    413: _l("That was more than we can take in one go."),
    415: _l("That kind of content is not accepted here."),
    429: _l("You are doing that too often. Please wait a little and try again."),
}
# The status names Werkzeug gives, as a visitor reads them.
TITLES = {
    400: _l("Bad Request"),
    403: _l("Forbidden"),
    404: _l("Not Found"),
    405: _l("Method Not Allowed"),
    413: _l("Request Entity Too Large"),
    415: _l("Unsupported Media Type"),
    429: _l("Too Many Requests"),
    500: _l("Internal Server Error"),
}


def render_http_error(error: HTTPException) -> tuple[str, int]:
    """Our own page for an HTTP error, with its status."""
    code = error.code or 500
    message = MESSAGES.get(code) or _("Something went wrong on our side. Please try again later.")
    title = TITLES.get(code) or error.name
    return render_template("error.html", code=code, title=title, message=message), code


def render_unexpected(error: Exception) -> tuple[str, int]:
    """Log an unexpected failure and show a plain 500 page."""
    log.exception("unhandled error on %s %s", request.method, request.path, exc_info=error)
    return render_http_error(InternalServerError())


def init_app(app: Flask) -> None:
    """Install the error handlers (JSON APIs install their own for their paths)."""
    app.register_error_handler(HTTPException, render_http_error)
    app.register_error_handler(Exception, render_unexpected)
