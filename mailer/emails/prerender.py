"""The fast path of bulk mail: a message rendered once with placeholders, then each reader's
bytes are the cached bytes with their own To, Message-ID, Date and links put in."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING

from ..backends import Message
from ..config import MailSettings
from ..tokens import Purpose
from .deliveries import Journaled, Recipient, message_id_of
from .links import Links, PersonalLinks
from .message import Content, build_email, finish
from .signing import BodyHasher, signing_enabled

if TYPE_CHECKING:  # the cache keeps pre-rendered digests; this module only reads it
    from .cache import RenderCache

_SIMPLE_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+$")
_DATE_SENTINEL = format_datetime(datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC))
# Characters a link would need escaped in the HTML part: such links take the slow path.
_NEEDS_ESCAPING = "&<>\"'"


@dataclass(frozen=True)
class Prerendered:
    """Serialised message bytes cut at the personal parts, which are named by slot."""

    chunks: tuple[bytes | str, ...]
    header_names: tuple[str, ...]
    # The link each link slot stands for: its purpose, and film for early-access links.
    links: dict[str, tuple[Purpose, int | None]]

    @functools.cached_property
    def slots(self) -> frozenset[str]:
        """The personal parts this message has."""
        return frozenset(c for c in self.chunks if isinstance(c, str))

    @functools.cached_property
    def body_hasher(self) -> BodyHasher | None:
        """The DKIM body hash with the fixed parts done once (None: hash each message whole)."""
        for index, chunk in enumerate(self.chunks):
            if isinstance(chunk, bytes) and b"\r\n\r\n" in chunk:
                first = chunk.partition(b"\r\n\r\n")[2]
                try:
                    return BodyHasher((first, *self.chunks[index + 1 :]))
                except ValueError:
                    return None
        return None


@dataclass(frozen=True)
class SlotLinks(Links):
    """Placeholders in place of links, remembering which link each stands for."""

    nonce: str
    asked: dict[str, tuple[Purpose, int | None]] = field(default_factory=dict)

    def slot(self, name: str) -> str:
        """The placeholder for one personal part (letters and digits only, escape-proof)."""
        return f"zq{self.nonce}{name}qz"

    def url(self, purpose: Purpose, film_id: int | None = None) -> str:
        """A placeholder that looks like a URL, so it passes the same checks as the real link."""
        name = purpose.value + ("" if film_id is None else str(film_id))
        self.asked[name] = (purpose, film_id)
        return f"http://{self.slot(name)}"


def prerender(
    content: Callable[[Links], Content], nonce: str, settings: MailSettings
) -> Prerendered:
    """Render and serialise once with placeholders, then cut the bytes at each placeholder."""
    slots = SlotLinks(nonce)
    email = build_email(
        content(slots),
        f"{slots.slot('to')}@slot.invalid",
        f"<{slots.slot('mid')}@slot.invalid>",
        _DATE_SENTINEL,
        settings,
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
    present = {c for c in chunks if isinstance(c, str)}
    links = {name: link for name, link in slots.asked.items() if name in present}
    return Prerendered(tuple(chunks), tuple(email.keys()), links)


def personalised(
    delivery: Journaled,
    reader: Recipient,
    cache: RenderCache,
    now: datetime,
    key: tuple[str, int, str],
    content: Callable[[Links], Content],
) -> Message:
    """Substitute one reader's parts into the cached bytes (the slow way for odd addresses)."""
    settings = cache.settings
    to = reader.email
    message_id = message_id_of(delivery, settings)
    date = cache.date_header(now)
    links = PersonalLinks(reader, settings.base_url)
    if not _SIMPLE_ADDRESS.match(to) or not message_id.isascii():
        return _slowly(content(links), to, message_id, date, cache)
    prerendered = cache.prerendered.get(key)
    if prerendered is None:
        prerendered = prerender(content, cache.slot_nonce, settings)
        cache.prerendered[key] = prerendered
    personal = {name: links.url(*link) for name, link in prerendered.links.items()}
    if any(char in url for url in personal.values() for char in _NEEDS_ESCAPING):
        # Would need escaping in the HTML part: let the slow path do it properly.
        return _slowly(content(links), to, message_id, date, cache)
    cache.fast_renders += 1
    values = {"to": to, "mid": message_id, "date": date, **personal}
    data = b"".join(
        chunk if isinstance(chunk, bytes) else values[chunk].encode("ascii")
        for chunk in prerendered.chunks
    )
    hasher = prerendered.body_hasher if signing_enabled(settings) else None
    body_hash = hasher.body_hash(values) if hasher else None
    return finish(data, to, message_id, settings, body_hash)


def _slowly(content: Content, to: str, message_id: str, date: str, cache: RenderCache) -> Message:
    """Build one reader's message as a whole, the way every one-off message is built."""
    cache.slow_renders += 1
    email = build_email(content, to, message_id, date, cache.settings)
    return finish(email.as_bytes(), to, message_id, cache.settings)
