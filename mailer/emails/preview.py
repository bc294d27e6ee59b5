"""For the admin and the public: a digest previewed as a reader gets it, and its archive page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime, make_msgid

from flask import render_template
from markupsafe import Markup

from ..config import MailSettings
from ..models import Digest
from .content import digest_content, digest_entries
from .links import ExampleLinks
from .message import build_email
from .text import render_markdown

EXAMPLE_ADDRESS = "subscriber@example.com"


@dataclass(frozen=True)
class RenderedEmail:
    """A message as a person sees it: for the admin preview."""

    subject: str
    html: str
    text: str
    headers: dict[str, str]


def preview_digest(digest: Digest, now: datetime, settings: MailSettings) -> RenderedEmail:
    """Exactly what a confirmed subscriber with both topics receives, with example links."""
    links = ExampleLinks(settings.base_url)
    content = digest_content(digest, now, links, True, settings)
    email = build_email(
        content, EXAMPLE_ADDRESS, make_msgid(domain="example.com"), format_datetime(now), settings
    )
    headers = {name: str(value) for name, value in email.items()}
    return RenderedEmail(content.subject, content.html, content.text, headers)


def archive_html(digest: Digest, now: datetime, settings: MailSettings) -> Markup:
    """The public web version of a digest's body: no personal links, gated films as coming soon."""
    return Markup(
        render_template(
            "email/_digest_body.html",
            intro_html=render_markdown(digest.intro_markdown),
            entries=digest_entries(digest, now, None, False, settings),
            preheader=digest.preheader,
        )
    )
