"""Builds each kind of message from a delivery row, at send time, to the standards of the list.

Every message is multipart/alternative: a text part from its own template and an HTML part with
its CSS inlined, both UTF-8 in 7bit or 8bit (lines kept under SMTP's 998), one each of From, To,
Subject, Date and Message-ID. Newsletters also carry List-Id, List-Unsubscribe (+ one-click),
Precedence and Auto-Submitted, the postal address and a visible unsubscribe link in both parts.

Bulk kinds (digests and early-access alerts) are rendered once per (digest or film, variant) into
the RenderCache with placeholders; each recipient's bytes are the cached bytes with the personal
parts (To, Message-ID, Date, links) substituted, instead of a new EmailMessage per recipient.

The settings come in once, as the RenderCache's MailSettings (or handed to the preview).
"""

from .cache import RenderCache
from .deliveries import Undeliverable
from .headers import UnsafeHeader, from_address
from .preview import RenderedEmail, archive_html, preview_digest
from .renderers import render_bulk, render_delivery

__all__ = [
    "RenderCache",
    "RenderedEmail",
    "Undeliverable",
    "UnsafeHeader",
    "archive_html",
    "from_address",
    "preview_digest",
    "render_bulk",
    "render_delivery",
]
