"""What a message says: templates filled for one kind of reader, films shown as that reader may
see them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask_babel import gettext as _
from markupsafe import Markup

from ..config import MailSettings
from ..films import in_early_access, is_public
from ..models import Digest, Film
from .cache import digest_films
from .headers import is_plain_url
from .links import Links
from .message import Content
from .text import html_part, markdown_text, render_markdown, text_part


@dataclass(frozen=True)
class FilmEntry:
    """A film as a newsletter shows it to one kind of reader."""

    title: str
    byline: str
    paragraphs: tuple[str, ...]
    note_html: Markup
    note_text: str
    state: str  # "public", "early" (with the reader's early link) or "soon" (no link)
    page_url: str | None = None
    watch_url: str | None = None
    early_url: str | None = None


def film_entry(
    film: Film,
    now: datetime,
    links: Links | None,
    may_see_early: bool,
    settings: MailSettings,
    note: str = "",
) -> FilmEntry:
    """How a film appears: public with its page, early with a personal link, or coming soon.

    This is the one place that decides whether gated content may appear in mail.
    """
    byline = " · ".join(str(p) for p in (film.year, film.director, film.country) if p)
    paragraphs = tuple(p.strip() for p in re.split(r"\n\s*\n", film.description or "") if p)
    common: dict[str, Any] = {
        "title": film.title,
        "byline": byline,
        "paragraphs": paragraphs,
        "note_html": render_markdown(note) if note else Markup(""),
        "note_text": markdown_text(note) if note else "",
    }
    if is_public(film, now):
        watch = film.watch_url if film.watch_url and is_plain_url(film.watch_url) else None
        page = f"{settings.base_url}/films/{film.slug}"
        return FilmEntry(**common, state="public", page_url=page, watch_url=watch)
    if in_early_access(film, now) and may_see_early and links is not None:
        return FilmEntry(**common, state="early", early_url=links.early(film.id))
    return FilmEntry(**common, state="soon")


def digest_entries(
    digest: Digest, now: datetime, links: Links | None, early: bool, settings: MailSettings
) -> list[FilmEntry]:
    """The digest's films in order, as one kind of reader sees them."""
    return [
        film_entry(item.film, now, links, early, settings, item.note)
        for item in digest_films(digest)
    ]


def _common(subject: str, links: Links | None, settings: MailSettings) -> dict[str, Any]:
    """Context every template gets: subject, base URL, postal address, footer links."""
    return {
        "subject": subject,
        "base_url": settings.base_url,
        "postal_address": settings.postal_address,
        "unsubscribe_url": links.unsubscribe() if links else None,
        "preferences_url": links.preferences() if links else None,
    }


def _from_templates(template: str, context: dict[str, Any], *, listed: bool, bulk: bool) -> Content:
    """A message from ``email/<template>.txt`` and ``.html``; ``listed`` ones get list headers."""
    return Content(
        subject=context["subject"],
        text=text_part(f"email/{template}.txt", **context),
        html=html_part(f"email/{template}.html", **context),
        list_headers=listed,
        bulk=bulk,
        # Signed once: the header and the body carry the same link.
        unsubscribe_url=context["unsubscribe_url"] if listed else None,
    )


def digest_content(
    digest: Digest,
    now: datetime,
    links: Links | None,
    early: bool,
    settings: MailSettings,
    *,
    test: bool = False,
) -> Content:
    """A digest as one kind of reader gets it (``early``: confirmed and wants early access)."""
    subject = ("[TEST] " if test else "") + digest.subject
    context = _common(subject, links, settings) | {
        "preheader": digest.preheader,
        "intro_html": render_markdown(digest.intro_markdown),
        "intro_text": markdown_text(digest.intro_markdown),
        "entries": digest_entries(digest, now, links, early, settings),
        "test": test,
    }
    return _from_templates("digest", context, listed=True, bulk=True)


def early_access_content(
    film: Film, now: datetime, links: Links, settings: MailSettings
) -> Content:
    """The alert that a film is open to subscribers before its release."""
    subject = _("Early access: %(title)s", title=film.title)
    entry = film_entry(film, now, links, True, settings)
    context = _common(subject, links, settings) | {"entry": entry, "film": film}
    return _from_templates("early_access", context, listed=True, bulk=True)


def simple_content(
    template: str,
    subject: str,
    links: Links | None,
    settings: MailSettings,
    *,
    listed: bool,
    **context: Any,
) -> Content:
    """A one-off message rendered from ``email/<template>.txt`` and ``.html``."""
    full = _common(subject, links, settings) | context
    return _from_templates(template, full, listed=listed, bulk=False)
