"""Mail HTML shown inside an admin page: served alone, sandboxed, under its own strict policy."""

from __future__ import annotations

import re

from flask import make_response
from werkzeug.wrappers import Response

# The frame may show the mail's inline styles and remote images, and nothing may run in it.
FRAME_POLICY = "; ".join(
    [
        "default-src 'none'",
        "img-src https: http: data:",
        "style-src 'unsafe-inline'",
        "font-src https: data:",
        "form-action 'none'",
        "frame-ancestors 'self'",
        "sandbox allow-popups allow-popups-to-escape-sandbox",
    ]
)
# The iframe's own sandbox: no scripts, no same-origin access; links open in a new tab.
IFRAME_SANDBOX = "allow-popups allow-popups-to-escape-sandbox"
_HEAD = re.compile(r"<head\b[^>]*>", re.I)
# Links in the mail open outside the frame, as they would from a mail program.
_BASE = '<base target="_blank">'


def with_new_tab_links(html: str) -> str:
    """The mail HTML with a <base> that sends every link to a new tab."""
    match = _HEAD.search(html)
    if match is None:
        return _BASE + html
    return html[: match.end()] + _BASE + html[match.end() :]


def framed_html(html: str) -> Response:
    """A response holding one mail's HTML, fit only for a same-origin sandboxed frame."""
    response = make_response(with_new_tab_links(html))
    response.mimetype = "text/html"
    response.headers["Content-Security-Policy"] = FRAME_POLICY
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response
