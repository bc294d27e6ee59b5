"""Builds each kind of message from a delivery row, at send time, to the standards of the list.

Every message is multipart/alternative: a text part from its own template and an HTML part with
its CSS inlined, both UTF-8 in 7bit or 8bit (lines kept under SMTP's 998), one each of From, To,
Subject, Date and Message-ID. Newsletters also carry List-Id, List-Unsubscribe (+ one-click),
Precedence and Auto-Submitted, the postal address and a visible unsubscribe link in both parts.

Bulk kinds (digests and early-access alerts) are rendered once per (digest or film, variant) into
the RenderCache with placeholders; each recipient's bytes are the cached bytes with the personal
parts (To, Message-ID, Date, links) substituted, instead of a new EmailMessage per recipient.
"""

from __future__ import annotations

import functools
import html as html_lib
import re
import secrets
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import css_inline
import dkim
import markdown as markdown_lib
import nh3
from flask import current_app, render_template
from markupsafe import Markup
from sqlalchemy import select

from .backends import Message, SenderMisconfigured
from .extensions import db
from .films import in_early_access, is_public
from .models import (
    Delivery,
    DeliveryKind,
    Digest,
    DigestFilm,
    Film,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from .text_rules import line_problem
from .tokens import EXAMPLE_TOKEN, Purpose, TokenOwner, link

# Long List-Unsubscribe URLs must reach the wire unfolded (see PERFORMANCE.md).
WIRE_POLICY = SMTP.clone(max_line_length=998)
# Body lines are wrapped well below 998 so substituted links never push one over.
MAX_BODY_LINE = 700
TEXT_WIDTH = 72
DKIM_HEADERS = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
)
EXAMPLE_ADDRESS = "subscriber@example.com"

_INLINER = css_inline.CSSInliner(keep_style_tags=False, load_remote_stylesheets=False)
_MARKDOWN_TAGS = {
    "a",
    "p",
    "br",
    "strong",
    "em",
    "b",
    "i",
    "ul",
    "ol",
    "li",
    "blockquote",
    "code",
    "pre",
    "h2",
    "h3",
    "h4",
    "hr",
}
_SPECIALS = re.compile(r'[\s<>()\[\],;:"\\]')
_SIMPLE_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+$")
_URL_SAFE = re.compile(r"^https?://[A-Za-z0-9._~:/?#\[\]@!$()*+,;=%-]+$")
# Where admin-written links may point; see link_target.
LINK_SCHEMES = frozenset({"http", "https", "mailto"})
_URL_INVISIBLE = re.compile("[\t\n\r]")
_URL_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_DATE_SENTINEL = format_datetime(datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC))


class UnsafeHeader(ValueError):
    """A header value that would inject lines or is not a valid address or URL."""


class Undeliverable(Exception):
    """This delivery can no longer be rendered (digest or film gone, or the reader may not
    see it); the engine should skip it rather than retry."""


class Journaled(Protocol):
    """What rendering reads of a delivery: its model object, or the row the sender read."""

    @property
    def id(self) -> int: ...

    @property
    def kind(self) -> str: ...

    @property
    def digest_id(self) -> int | None: ...

    @property
    def film_id(self) -> int | None: ...

    @property
    def message_id(self) -> str | None: ...


class Recipient(TokenOwner, Protocol):
    """What rendering reads of a subscriber: its model object, or the row the sender read."""

    @property
    def email(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def wants_early_access(self) -> bool: ...


R = TypeVar("R", bound=Recipient)


@dataclass(frozen=True)
class RenderedEmail:
    """A message as a person sees it: for the admin preview."""

    subject: str
    html: str
    text: str
    headers: dict[str, str]


@dataclass(frozen=True)
class Content:
    """One message's words before it becomes bytes."""

    subject: str
    text: str
    html: str
    list_headers: bool  # List-Id, List-Unsubscribe: messages to a subscribed reader
    bulk: bool  # Precedence and Auto-Submitted: newsletters
    unsubscribe_url: str | None = None


@dataclass(frozen=True)
class _Prerendered:
    """Serialised message bytes cut at the personal parts, which are named by slot."""

    chunks: tuple[bytes | str, ...]
    header_names: tuple[str, ...]

    @functools.cached_property
    def slots(self) -> frozenset[str]:
        """The personal parts this message has."""
        return frozenset(c for c in self.chunks if isinstance(c, str))


@dataclass
class RenderCache:
    """What a batch of sends can share: rows loaded and messages pre-rendered once."""

    digests: dict[int, Digest] = field(default_factory=dict)
    films: dict[int, Film] = field(default_factory=dict)
    prerendered: dict[tuple[str, int, str], _Prerendered] = field(default_factory=dict)
    dkim_key: bytes | None = None
    slot_nonce: str = field(default_factory=lambda: secrets.token_hex(6))
    # Per digest: its films' ids and dates, which choose the variant each reader gets.
    lineups: dict[int, _Lineup] = field(default_factory=dict)
    # How many bulk messages were assembled from pre-rendered bytes, and how many the slow way.
    fast_renders: int = 0
    slow_renders: int = 0

    # The Date header of the last time asked for: a group's messages share one.
    _date: tuple[datetime, str] | None = None

    def new_transaction(self) -> None:
        """Forget what may have changed since the last transaction: the films' dates."""
        self.lineups.clear()

    def date_header(self, now: datetime) -> str:
        """``now`` as a Date header, formatted once per distinct time."""
        if self._date is None or self._date[0] != now:
            self._date = (now, format_datetime(now))
        return self._date[1]


@dataclass(frozen=True)
class _Lineup:
    """A digest's films in order, as far as choosing a variant goes: ids and dates."""

    film_ids: tuple[int, ...]
    release_dates: tuple[date | None, ...]
    early_access_ats: tuple[datetime | None, ...]

    def states(self, now: datetime) -> str:
        """One letter per film: public, in early access, or coming soon (as films.py decides)."""
        today = now.astimezone(UTC).date()
        return "".join(
            "p"
            if released is None or released <= today
            else "e"
            if early is not None and early <= now
            else "s"
            for released, early in zip(self.release_dates, self.early_access_ats, strict=True)
        )


class Links(Protocol):
    """Where a reader's personal links point."""

    def unsubscribe(self) -> str:
        """The unsubscribe link."""
        ...

    def preferences(self) -> str:
        """The preferences link."""
        ...

    def early(self, film_id: int) -> str:
        """The early-access link to one film."""
        ...


@dataclass(frozen=True)
class PersonalLinks:
    """A subscriber's real, signed links."""

    subscriber: Recipient

    def unsubscribe(self) -> str:
        """The unsubscribe link."""
        return link(Purpose.UNSUBSCRIBE, self.subscriber)

    def preferences(self) -> str:
        """The preferences link."""
        return link(Purpose.PREFERENCES, self.subscriber)

    def early(self, film_id: int) -> str:
        """The early-access link to one film."""
        return link(Purpose.EARLY_ACCESS, self.subscriber, film_id=film_id)


@dataclass(frozen=True)
class ExampleLinks:
    """Links that look real but work for nobody: previews and test sends (their unsubscribe
    link answers 200 and does nothing, so a test's one-click header is no dead end)."""

    base_url: str

    def unsubscribe(self) -> str:
        """An example unsubscribe link."""
        return f"{self.base_url}/{Purpose.UNSUBSCRIBE.value}/{EXAMPLE_TOKEN}"

    def preferences(self) -> str:
        """An example preferences link."""
        return f"{self.base_url}/{Purpose.PREFERENCES.value}/{EXAMPLE_TOKEN}"

    def early(self, film_id: int) -> str:
        """An example early-access link."""
        return f"{self.base_url}/{Purpose.EARLY_ACCESS.value}/{EXAMPLE_TOKEN}"


@dataclass(frozen=True)
class _SlotLinks:
    """Placeholders in place of links, for pre-rendering."""

    nonce: str

    def slot(self, name: str) -> str:
        """The placeholder for one personal part (letters and digits only, escape-proof)."""
        return f"zq{self.nonce}{name}qz"

    # Link placeholders look like URLs so they pass the same checks as the real links.
    def unsubscribe(self) -> str:
        """The placeholder of the unsubscribe link."""
        return f"http://{self.slot('unsub')}"

    def preferences(self) -> str:
        """The placeholder of the preferences link."""
        return f"http://{self.slot('prefs')}"

    def early(self, film_id: int) -> str:
        """The placeholder of one film's early-access link."""
        return f"http://{self.slot(f'early{film_id}')}"


# ---------------------------------------------------------------------------------------------
# Markdown, text and HTML helpers


def render_markdown(text: str) -> Markup:
    """Markdown to safe HTML: only harmless tags, links only to http, https and mailto.

    The text is never evaluated as a template; raw HTML in it is sanitised like the rest.
    """
    return Markup(_clean_markdown(text or ""))


@functools.lru_cache(maxsize=512)
def _clean_markdown(text: str) -> str:
    """Markdown to sanitised HTML, remembered: the same notes recur in every message of a batch."""
    raw = markdown_lib.markdown(text, output_format="html")
    return nh3.clean(
        raw,
        tags=_MARKDOWN_TAGS,
        attributes={"a": {"href", "title"}},
        attribute_filter=_safe_link,
        url_schemes=LINK_SCHEMES,
        link_rel="noopener noreferrer",
    )


def link_target(url: str) -> str | None:
    """The URL as a browser reads it, if it is an absolute http, https or mailto link, else None.

    The WHATWG URL parser strips leading and trailing C0 controls and spaces and drops every tab
    and newline, so " java\tscript:" is "javascript:". Relative links are refused too: a mail has
    no base to resolve them against.
    """
    cleaned = _URL_INVISIBLE.sub("", url.strip("".join(map(chr, range(0x21)))))
    scheme = _URL_SCHEME.match(cleaned)
    if scheme is None or scheme.group(1).lower() not in LINK_SCHEMES:
        return None
    return cleaned


def _safe_link(element: str, attribute: str, value: str) -> str | None:
    """nh3's attribute filter: an href (entities already decoded) only as link_target allows."""
    if attribute == "href":
        return link_target(value)
    return value


_LINK = re.compile(r'<a\s[^>]*?href="([^"]*)"[^>]*>(.*?)</a>', re.S)
_BLOCK_END = re.compile(r"</(p|h[1-6]|ul|ol|blockquote|pre)>|<hr\s*/?>", re.I)


def markdown_text(text: str) -> str:
    """Markdown as plain text for the text part: links as "words (url)", wrapped lines."""
    html = str(render_markdown(text))
    html = _LINK.sub(lambda m: m.group(1) if m.group(2) == m.group(1) else _link_text(m), html)
    html = _BLOCK_END.sub("\n\n", html)
    html = re.sub(r"<li>", "- ", html)
    html = re.sub(r"<br\s*/?>", "\n", html)
    plain = html_lib.unescape(nh3.clean(html, tags=set()))
    return wrap_text(plain)


def _link_text(match: re.Match[str]) -> str:
    """A link's words followed by its URL."""
    return f"{match.group(2)} ({match.group(1)})"


def wrap_text(text: str, width: int = TEXT_WIDTH) -> str:
    """Wrap prose paragraph by paragraph, never breaking a word or a URL."""
    paragraphs = re.split(r"\n\s*\n", text.strip())
    wrapped = [
        "\n".join(
            textwrap.fill(line, width, break_long_words=False, break_on_hyphens=False)
            for line in paragraph.splitlines()
            if line.strip()
        )
        for paragraph in paragraphs
    ]
    return "\n\n".join(p for p in wrapped if p)


def _tidy_text(text: str) -> str:
    """Strip trailing spaces and runs of blank lines that templates leave behind."""
    lines = [line.rstrip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def short_lines(html: str, limit: int = MAX_BODY_LINE) -> str:
    """Break HTML lines longer than ``limit`` at whitespace outside tags (where it is inert)."""
    out: list[str] = []
    for line in html.split("\n"):
        while len(line) > limit:
            cut = _html_break(line, limit)
            if cut is None:
                break
            out.append(line[:cut])
            line = line[cut + 1 :]
        out.append(line)
    return "\n".join(out)


def _html_break(line: str, limit: int) -> int | None:
    """The last space before ``limit`` that lies in text (not in a tag), else the first one."""
    best: int | None = None
    in_tag = False
    quote = ""
    for index, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif in_tag:
            if char in "\"'":
                quote = char
            elif char == ">":
                in_tag = False
        elif char == "<":
            in_tag = True
        elif char == " ":
            if index > limit and best is not None:
                return best
            best = index
    return best


def _html(template: str, **context: Any) -> str:
    """Render an HTML template, inline its CSS, keep lines short."""
    return short_lines(_INLINER.inline(render_template(template, **context)))


def _text(template: str, **context: Any) -> str:
    """Render a text template and tidy it."""
    return _tidy_text(render_template(template, **context))


# ---------------------------------------------------------------------------------------------
# Headers


def check_header(value: str, name: str) -> str:
    """Refuse a header value with a line break of any kind or another control character."""
    problem = line_problem(value)
    if problem:
        raise UnsafeHeader(f"{name} {problem}")
    return value


def check_url(url: str, name: str) -> str:
    """Refuse a URL that could not stand inside <...> in a header."""
    check_header(url, name)
    if not _URL_SAFE.match(url):
        raise UnsafeHeader(f"{name} is not a plain http(s) URL: {url!r}")
    return url


def address_of(value: str) -> Address:
    """A recipient address checked by the standard library's parser."""
    check_header(value, "address")
    value = value.strip()
    try:
        return Address(addr_spec=value)
    except (ValueError, IndexError) as exc:
        # The parser refuses internationalised local parts, which SMTPUTF8 carries fine.
        local, at, domain = value.rpartition("@")
        if value.isascii() or not (at and local and domain) or _SPECIALS.search(value):
            raise UnsafeHeader(f"not a valid e-mail address: {value!r}") from exc
        return Address(username=local, domain=domain)


def from_address() -> tuple[str, str]:
    """(header value, bare address) of MAILER_FROM, checked."""
    return _parse_from(current_app.config["MAILER_FROM"])


@functools.lru_cache(maxsize=16)
def _parse_from(configured: str) -> tuple[str, str]:
    """Parse a From setting once (the header parser is slow, and this runs per message)."""
    check_header(configured, "MAILER_FROM")
    name, addr = parseaddr(configured)
    if not addr or "@" not in addr:
        raise UnsafeHeader(f"MAILER_FROM is not an address: {configured!r}")
    return str(Address(display_name=name, addr_spec=addr)), addr


def envelope_sender() -> str:
    """The bounce address: MAILER_ENVELOPE_FROM, else the From address."""
    configured = current_app.config.get("MAILER_ENVELOPE_FROM") or ""
    return _bare_address(configured) if configured else from_address()[1]


@functools.lru_cache(maxsize=16)
def _bare_address(configured: str) -> str:
    """A configured address, checked once."""
    return address_of(configured).addr_spec


def list_id() -> str:
    """The List-Id: MAILER_LIST_ID, else derived from MAILER_BASE_URL's host."""
    configured = check_header(current_app.config.get("MAILER_LIST_ID") or "", "MAILER_LIST_ID")
    if configured:
        return configured if "<" in configured else f"<{configured.strip()}>"
    host = urlsplit(current_app.config["MAILER_BASE_URL"]).hostname or "localhost"
    return f"<newsletter.{host}>"


def list_unsubscribe(url: str) -> str:
    """The List-Unsubscribe value: the https link, and a mailto if configured."""
    value = f"<{check_url(url, 'unsubscribe link')}>"
    mailto = current_app.config.get("MAILER_UNSUBSCRIBE_MAILTO") or ""
    if mailto:
        value += f", <mailto:{address_of(mailto).addr_spec}?subject=unsubscribe>"
    return value


def message_id_for(delivery: Delivery) -> str:
    """The delivery's Message-ID, fixed at its first attempt and reused on retry."""
    if delivery.message_id is None:
        domain = from_address()[1].rpartition("@")[2] or "localhost"
        delivery.message_id = make_msgid(idstring=f"d{delivery.id}", domain=domain)
    return delivery.message_id


def _message_id_of(delivery: Journaled) -> str:
    """The delivery's Message-ID; the sender's rows have theirs from the claim."""
    if delivery.message_id is not None:
        return delivery.message_id
    if isinstance(delivery, Delivery):
        return message_id_for(delivery)
    raise Undeliverable(f"delivery {delivery.id} has no Message-ID")


def recipient_of(delivery: Delivery, subscriber: Subscriber | None) -> str:
    """Where a delivery goes: its own address if set, else the subscriber's."""
    if delivery.to_address:
        return delivery.to_address
    if subscriber is None:
        raise Undeliverable(f"delivery {delivery.id} has no recipient")
    return subscriber.email


def build_email(content: Content, to: str, message_id: str, date: str) -> EmailMessage:
    """The one way a message is assembled; pre-rendering uses it too, with placeholders."""
    policy = WIRE_POLICY if to.isascii() else WIRE_POLICY.clone(utf8=True)
    email = EmailMessage(policy=policy)
    email["From"] = from_address()[0]
    email["To"] = address_of(to)
    email["Subject"] = check_header(content.subject, "Subject")
    email["Date"] = date
    email["Message-ID"] = check_header(message_id, "Message-ID")
    if content.list_headers:
        email["List-Id"] = list_id()
    if content.unsubscribe_url:
        email["List-Unsubscribe"] = list_unsubscribe(content.unsubscribe_url)
        email["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    if content.bulk:
        email["Precedence"] = "bulk"
        email["Auto-Submitted"] = "auto-generated"
    email.set_content(content.text, subtype="plain", charset="utf-8", cte=_cte(content.text))
    email.make_alternative()
    html_part = EmailMessage(policy=policy)
    html_part.set_content(content.html, subtype="html", charset="utf-8", cte=_cte(content.html))
    # MIME-Version belongs to the message, not to a part (add_alternative() would repeat it).
    del html_part["MIME-Version"]
    email.attach(html_part)
    return email


def _cte(body: str) -> str:
    """7bit for ASCII, else 8bit: readable on the wire, never base64."""
    return "7bit" if body.isascii() else "8bit"


def _finish(data: bytes, to: str, message_id: str) -> Message:
    """Sign if configured and wrap as a Message for the backend."""
    return Message(envelope_sender(), (to,), sign(data), message_id)


# ---------------------------------------------------------------------------------------------
# DKIM


_dkim_keys: dict[str, bytes] = {}


def sign(data: bytes) -> bytes:
    """Prefix a DKIM-Signature when MAILER_DKIM_SELECTOR, _DOMAIN and _KEY_FILE are all set."""
    config = current_app.config
    selector = config.get("MAILER_DKIM_SELECTOR") or ""
    domain = config.get("MAILER_DKIM_DOMAIN") or ""
    key_file = config.get("MAILER_DKIM_KEY_FILE") or ""
    if not (selector and domain and key_file):
        return data
    key = _dkim_keys.get(key_file)
    if key is None:
        try:
            key = Path(key_file).read_bytes()
        except OSError as exc:
            raise SenderMisconfigured(f"cannot read MAILER_DKIM_KEY_FILE: {exc}") from exc
        _dkim_keys[key_file] = key
    head = data.split(b"\r\n\r\n", 1)[0].lower()
    present = [h.encode() for h in DKIM_HEADERS if f"\r\n{h.lower()}:".encode() in b"\r\n" + head]
    try:
        signature = dkim.sign(
            data,
            selector.encode(),
            domain.encode(),
            key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=present,
        )
    except dkim.DKIMException as exc:
        raise SenderMisconfigured(f"DKIM signing failed: {exc}") from exc
    return bytes(signature) + data


# ---------------------------------------------------------------------------------------------
# The pieces of a message


def _common(subject: str, links: Links | None) -> dict[str, Any]:
    """Context every template gets: subject, base URL, postal address, footer links."""
    config = current_app.config
    return {
        "subject": subject,
        "base_url": config["MAILER_BASE_URL"],
        "postal_address": config.get("MAILER_POSTAL_ADDRESS", ""),
        "unsubscribe_url": links.unsubscribe() if links else None,
        "preferences_url": links.preferences() if links else None,
    }


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
    film: Film, now: datetime, links: Links | None, may_see_early: bool, note: str = ""
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
        base = current_app.config["MAILER_BASE_URL"]
        watch = film.watch_url if film.watch_url and _URL_SAFE.match(film.watch_url) else None
        return FilmEntry(
            **common, state="public", page_url=f"{base}/films/{film.slug}", watch_url=watch
        )
    if in_early_access(film, now) and may_see_early and links is not None:
        return FilmEntry(**common, state="early", early_url=links.early(film.id))
    return FilmEntry(**common, state="soon")


def may_see_early(subscriber: Recipient | None) -> bool:
    """Only confirmed subscribers who asked for early access get early links."""
    return (
        subscriber is not None
        and subscriber.status == SubscriberStatus.CONFIRMED
        and bool(subscriber.wants_early_access)
    )


def _digest_films(digest: Digest) -> list[DigestFilm]:
    """The digest's films in order, with their notes."""
    query = (
        select(DigestFilm)
        .where(DigestFilm.digest_id == digest.id)
        .order_by(DigestFilm.position, DigestFilm.film_id)
    )
    return list(db.session.scalars(query))


def digest_content(
    digest: Digest, now: datetime, links: Links | None, early: bool, *, test: bool = False
) -> Content:
    """A digest as one kind of reader gets it (``early``: confirmed and wants early access)."""
    subject = ("[TEST] " if test else "") + digest.subject
    entries = [
        film_entry(item.film, now, links, early, item.note) for item in _digest_films(digest)
    ]
    context = _common(subject, links) | {
        "preheader": digest.preheader,
        "intro_html": render_markdown(digest.intro_markdown),
        "intro_text": markdown_text(digest.intro_markdown),
        "entries": entries,
        "test": test,
    }
    return Content(
        subject=subject,
        text=_text("email/digest.txt", **context),
        html=_html("email/digest.html", **context),
        list_headers=True,
        bulk=True,
        unsubscribe_url=context["unsubscribe_url"],  # signed once: header and body agree
    )


def early_access_content(film: Film, now: datetime, links: Links) -> Content:
    """The alert that a film is open to subscribers before its release."""
    subject = f"Early access: {film.title}"
    entry = film_entry(film, now, links, True)
    context = _common(subject, links) | {"entry": entry, "film": film}
    return Content(
        subject=subject,
        text=_text("email/early_access.txt", **context),
        html=_html("email/early_access.html", **context),
        list_headers=True,
        bulk=True,
        unsubscribe_url=context["unsubscribe_url"],
    )


def _simple(
    template: str, subject: str, links: Links | None, *, listed: bool, **context: Any
) -> Content:
    """A one-off message rendered from ``email/<template>.txt`` and ``.html``."""
    full = _common(subject, links) | context
    return Content(
        subject=subject,
        text=_text(f"email/{template}.txt", **full),
        html=_html(f"email/{template}.html", **full),
        list_headers=listed,
        bulk=False,
        unsubscribe_url=full["unsubscribe_url"] if listed else None,
    )


def films_in_early_access(now: datetime) -> list[Film]:
    """Films open to early-access subscribers right now, soonest release first."""
    query = (
        select(Film)
        .where(Film.early_access_at.is_not(None), Film.early_access_at <= now)
        .order_by(Film.release_date, Film.title)
    )
    return [film for film in db.session.scalars(query) if in_early_access(film, now)]


# ---------------------------------------------------------------------------------------------
# One function per kind


def _need(subscriber: R | None, delivery: Journaled) -> R:
    """The delivery's subscriber, which this kind cannot do without."""
    if subscriber is None:
        raise Undeliverable(f"delivery {delivery.id} ({delivery.kind}) has no subscriber")
    return subscriber


def _one_off(delivery: Delivery, to: str, content: Content, now: datetime) -> Message:
    """Assemble a single message the slow, simple way."""
    message_id = message_id_for(delivery)
    email = build_email(content, to, message_id, format_datetime(now))
    return _finish(email.as_bytes(), to, message_id)


def render_confirmation(
    delivery: Delivery, subscriber: Subscriber | None, cache: RenderCache, now: datetime
) -> Message:
    """Double opt-in: the link that confirms the subscription."""
    reader = _need(subscriber, delivery)
    content = _simple(
        "confirmation",
        "Please confirm your subscription",
        None,
        listed=False,
        confirm_url=link(Purpose.CONFIRM, reader),
        max_age_hours=int(current_app.config["MAILER_CONFIRM_MAX_AGE"]) // 3600,
    )
    return _one_off(delivery, recipient_of(delivery, reader), content, now)


def render_welcome(
    delivery: Delivery, subscriber: Subscriber | None, cache: RenderCache, now: datetime
) -> Message:
    """After confirming: what to expect, and the films open to early access right now."""
    reader = _need(subscriber, delivery)
    links = PersonalLinks(reader)
    early = may_see_early(reader)
    entries = (
        [film_entry(f, now, links, early) for f in films_in_early_access(now)] if early else []
    )
    content = _simple(
        "welcome",
        "Welcome to the Documentaries newsletter",
        links,
        listed=True,
        entries=entries,
        wants_digest=reader.wants_digest,
        wants_early_access=reader.wants_early_access,
    )
    return _one_off(delivery, recipient_of(delivery, reader), content, now)


def _digest_of(delivery: Journaled, cache: RenderCache) -> Digest:
    """The delivery's digest, loaded once per batch."""
    if delivery.digest_id is None:
        raise Undeliverable(f"delivery {delivery.id} names no digest")
    digest = cache.digests.get(delivery.digest_id)
    if digest is None:
        digest = db.session.get(Digest, delivery.digest_id)
        if digest is None:
            raise Undeliverable(f"delivery {delivery.id}: digest {delivery.digest_id} is gone")
        cache.digests[delivery.digest_id] = digest
    return digest


def _film_of(delivery: Journaled, cache: RenderCache) -> Film:
    """The delivery's film, loaded once per batch."""
    if delivery.film_id is None:
        raise Undeliverable(f"delivery {delivery.id} names no film")
    film = cache.films.get(delivery.film_id)
    if film is None:
        film = db.session.get(Film, delivery.film_id)
        if film is None:
            raise Undeliverable(f"delivery {delivery.id}: film {delivery.film_id} is gone")
        cache.films[delivery.film_id] = film
    return film


def render_digest(
    delivery: Journaled, subscriber: Recipient | None, cache: RenderCache, now: datetime
) -> Message:
    """A digest for one subscriber, assembled from the batch's pre-rendered bytes."""
    reader = _need(subscriber, delivery)
    digest = _digest_of(delivery, cache)
    assert delivery.digest_id is not None  # _digest_of checked
    lineup = _lineup_of(delivery.digest_id, cache)
    # Each film's state now (public, early, soon) is part of the key, so a cache that outlives
    # a release or an early-access start never serves yesterday's links.
    states = lineup.states(now)
    early = "e" in states and may_see_early(reader)
    key = ("digest", delivery.digest_id, f"{'early' if early else 'plain'}:{states}")

    def content(links: Links) -> Content:
        """This digest's words for this variant."""
        return digest_content(digest, now, links, early)

    early_ids = list(lineup.film_ids) if early else []
    return _personalised(delivery, reader, cache, now, key, content, early_ids)


def _lineup_of(digest_id: int, cache: RenderCache) -> _Lineup:
    """The digest's films' ids and dates, read in one query once per transaction."""
    lineup = cache.lineups.get(digest_id)
    if lineup is None:
        rows = db.session.execute(
            select(DigestFilm.film_id, Film.release_date, Film.early_access_at)
            .join(Film, Film.id == DigestFilm.film_id)
            .where(DigestFilm.digest_id == digest_id)
            .order_by(DigestFilm.position)
        ).all()
        lineup = _Lineup(
            tuple(r.film_id for r in rows),
            tuple(r.release_date for r in rows),
            tuple(r.early_access_at for r in rows),
        )
        cache.lineups[digest_id] = lineup
    return lineup


def render_early_access(
    delivery: Journaled, subscriber: Recipient | None, cache: RenderCache, now: datetime
) -> Message:
    """The alert that a film opened early, with the subscriber's personal link."""
    reader = _need(subscriber, delivery)
    film = _film_of(delivery, cache)
    if not may_see_early(reader):
        raise Undeliverable(f"delivery {delivery.id}: subscriber may not see early access")
    if not (in_early_access(film, now) or is_public(film, now)):
        raise Undeliverable(f"delivery {delivery.id}: {film.slug} is not open yet")
    key = ("early_access", film.id, "public" if is_public(film, now) else "early")

    def content(links: Links) -> Content:
        """This film's alert."""
        return early_access_content(film, now, links)

    return _personalised(delivery, reader, cache, now, key, content, [film.id])


def render_test(
    delivery: Delivery, subscriber: Subscriber | None, cache: RenderCache, now: datetime
) -> Message:
    """A digest as a confirmed subscriber with both topics gets it, to an admin's address."""
    if not delivery.to_address:
        raise Undeliverable(f"test delivery {delivery.id} has no address")
    digest = _digest_of(delivery, cache)
    links = ExampleLinks(current_app.config["MAILER_BASE_URL"])
    content = digest_content(digest, now, links, True, test=True)
    return _one_off(delivery, delivery.to_address, content, now)


def render_already_subscribed(
    delivery: Delivery, subscriber: Subscriber | None, cache: RenderCache, now: datetime
) -> Message:
    """Told to the address itself when someone subscribes it again (never to the visitor)."""
    reader = _need(subscriber, delivery)
    confirmed = reader.status == SubscriberStatus.CONFIRMED
    links = PersonalLinks(reader) if confirmed else None
    content = _simple("already_subscribed", "You are already subscribed", links, listed=confirmed)
    return _one_off(delivery, reader.email, content, now)


def render_address_confirmation(
    delivery: Delivery, subscriber: Subscriber | None, cache: RenderCache, now: datetime
) -> Message:
    """To the new address of an address change: the link that confirms it."""
    reader = _need(subscriber, delivery)
    if not delivery.to_address:
        raise Undeliverable(f"delivery {delivery.id}: no new address")
    content = _simple(
        "address_confirmation",
        "Please confirm your new address",
        None,
        listed=False,
        confirm_url=link(Purpose.ADDRESS, reader),
    )
    return _one_off(delivery, delivery.to_address, content, now)


def render_address_changed(
    delivery: Delivery, subscriber: Subscriber | None, cache: RenderCache, now: datetime
) -> Message:
    """To the old address once the new one is confirmed: a notice, in case it was not you."""
    if not delivery.to_address:
        raise Undeliverable(f"delivery {delivery.id}: no old address")
    content = _simple("address_changed", "Your newsletter address was changed", None, listed=False)
    return _one_off(delivery, delivery.to_address, content, now)


KindRenderer = Callable[[Delivery, Subscriber | None, RenderCache, datetime], Message]

RENDERERS: dict[str, KindRenderer] = {
    DeliveryKind.CONFIRMATION: render_confirmation,
    DeliveryKind.WELCOME: render_welcome,
    DeliveryKind.DIGEST: render_digest,
    DeliveryKind.EARLY_ACCESS: render_early_access,
    DeliveryKind.TEST: render_test,
    DeliveryKind.ALREADY_SUBSCRIBED: render_already_subscribed,
    DeliveryKind.ADDRESS_CONFIRMATION: render_address_confirmation,
    DeliveryKind.ADDRESS_CHANGED: render_address_changed,
}


def render_delivery(
    delivery: Delivery,
    subscriber: Subscriber | None,
    cache: RenderCache,
    now: datetime | None = None,
) -> Message:
    """The finished message for one delivery row (raises Undeliverable or UnsafeHeader)."""
    renderer = RENDERERS.get(delivery.kind)
    if renderer is None:
        raise Undeliverable(f"delivery {delivery.id}: unknown kind {delivery.kind!r}")
    return renderer(delivery, subscriber, cache, now or utcnow())


BULK_RENDERERS: dict[str, Callable[[Journaled, Recipient, RenderCache, datetime], Message]] = {
    DeliveryKind.DIGEST: render_digest,
    DeliveryKind.EARLY_ACCESS: render_early_access,
}


def render_bulk(
    delivery: Journaled, reader: Recipient, cache: RenderCache, now: datetime
) -> Message:
    """A digest or an alert from plain rows, as the sender reads them (no model objects)."""
    renderer = BULK_RENDERERS.get(delivery.kind)
    if renderer is None:
        raise Undeliverable(f"delivery {delivery.id}: {delivery.kind!r} is not sent in bulk")
    return renderer(delivery, reader, cache, now)


# ---------------------------------------------------------------------------------------------
# The fast path: pre-rendered bytes with personal parts substituted


def _personalised(
    delivery: Journaled,
    reader: Recipient,
    cache: RenderCache,
    now: datetime,
    key: tuple[str, int, str],
    content: Callable[[Links], Content],
    film_ids: list[int],
) -> Message:
    """Substitute one reader's parts into the cached bytes (the slow way for odd addresses)."""
    to = reader.email
    message_id = _message_id_of(delivery)
    date = cache.date_header(now)
    links = PersonalLinks(reader)
    values = {"to": to, "mid": message_id, "date": date}
    if not _SIMPLE_ADDRESS.match(to) or not message_id.isascii():
        cache.slow_renders += 1
        email = build_email(content(links), to, message_id, date)
        return _finish(email.as_bytes(), to, message_id)
    prerendered = cache.prerendered.get(key)
    if prerendered is None:
        prerendered = prerender(content, cache.slot_nonce)
        cache.prerendered[key] = prerendered
    slots = prerendered.slots
    if "unsub" in slots:
        values["unsub"] = links.unsubscribe()
    if "prefs" in slots:
        values["prefs"] = links.preferences()
    for film_id in film_ids:
        if f"early{film_id}" in slots:
            values[f"early{film_id}"] = links.early(film_id)
    personal_links = [v for k, v in values.items() if k not in ("to", "mid", "date")]
    if any(char in url for url in personal_links for char in "&<>\"'"):
        # Would need escaping in the HTML part: let the slow path do it properly.
        cache.slow_renders += 1
        email = build_email(content(links), to, message_id, date)
        return _finish(email.as_bytes(), to, message_id)
    cache.fast_renders += 1
    data = b"".join(
        chunk if isinstance(chunk, bytes) else values[chunk].encode("ascii")
        for chunk in prerendered.chunks
    )
    return _finish(data, to, message_id)


def prerender(content: Callable[[Links], Content], nonce: str) -> _Prerendered:
    """Render and serialise once with placeholders, then cut the bytes at each placeholder."""
    slots = _SlotLinks(nonce)
    email = build_email(
        content(slots),
        f"{slots.slot('to')}@slot.invalid",
        f"<{slots.slot('mid')}@slot.invalid>",
        _DATE_SENTINEL,
    )
    data = email.as_bytes()
    head, sep, body = data.partition(b"\r\n\r\n")
    for before, name in (
        (f"{slots.slot('to')}@slot.invalid", "to"),
        (f"<{slots.slot('mid')}@slot.invalid>", "mid"),
        (_DATE_SENTINEL, "date"),
    ):
        if head.count(before.encode()) != 1:
            raise RuntimeError(f"pre-rendering could not place {name!r} exactly once")
        head = head.replace(before.encode(), slots.slot(name).encode())
    pattern = re.compile(rb"(?:http://)?zq" + nonce.encode() + rb"([a-z0-9]+)qz")
    parts = pattern.split(head + sep + body)
    chunks: list[bytes | str] = []
    for index, part in enumerate(parts):
        if index % 2:
            chunks.append(part.decode("ascii"))
        elif part:
            chunks.append(part)
    return _Prerendered(tuple(chunks), tuple(email.keys()))


# ---------------------------------------------------------------------------------------------
# For the admin: preview and archive


def preview_digest(digest: Digest, now: datetime) -> RenderedEmail:
    """Exactly what a confirmed subscriber with both topics receives, with example links."""
    links = ExampleLinks(current_app.config["MAILER_BASE_URL"])
    content = digest_content(digest, now, links, True)
    email = build_email(
        content, EXAMPLE_ADDRESS, make_msgid(domain="example.com"), format_datetime(now)
    )
    headers = {name: str(value) for name, value in email.items()}
    return RenderedEmail(content.subject, content.html, content.text, headers)


def archive_html(digest: Digest, now: datetime) -> Markup:
    """The public web version of a digest's body: no personal links, gated films as coming soon."""
    entries = [film_entry(item.film, now, None, False, item.note) for item in _digest_films(digest)]
    return Markup(
        render_template(
            "email/_digest_body.html",
            intro_html=render_markdown(digest.intro_markdown),
            entries=entries,
            preheader=digest.preheader,
        )
    )
