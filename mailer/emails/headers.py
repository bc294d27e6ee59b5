"""Header values: checked against injection, addresses parsed, and the list's own headers."""

from __future__ import annotations

import functools
import re
from email.headerregistry import Address
from email.utils import parseaddr
from urllib.parse import urlsplit

from ..config import MailSettings, mail_settings
from ..text_rules import line_problem

_SPECIALS = re.compile(r'[\s<>()\[\],;:"\\]')
_PLAIN_URL = re.compile(r"^https?://[A-Za-z0-9._~:/?#\[\]@!$()*+,;=%-]+$")


class UnsafeHeader(ValueError):
    """A header value that would inject lines or is not a valid address or URL."""


def check_header(value: str, name: str) -> str:
    """Refuse a header value with a line break of any kind or another control character."""
    problem = line_problem(value)
    if problem:
        raise UnsafeHeader(f"{name} {problem}")
    return value


def is_plain_url(url: str) -> bool:
    """Whether the URL is http(s) with nothing that would need escaping in a header or HTML."""
    return bool(_PLAIN_URL.match(url))


def check_url(url: str, name: str) -> str:
    """Refuse a URL that could not stand inside <...> in a header."""
    check_header(url, name)
    if not is_plain_url(url):
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


def from_address(settings: MailSettings | None = None) -> tuple[str, str]:
    """(header value, bare address) of MAILER_FROM, checked; the running app's unless given
    (the sending engine takes its Message-IDs' domain from it)."""
    return _parse_from((settings or mail_settings()).sender)


@functools.lru_cache(maxsize=16)
def _parse_from(configured: str) -> tuple[str, str]:
    """Parse a From setting once (the header parser is slow, and this runs per message)."""
    check_header(configured, "MAILER_FROM")
    name, addr = parseaddr(configured)
    if not addr or "@" not in addr:
        raise UnsafeHeader(f"MAILER_FROM is not an address: {configured!r}")
    return str(Address(display_name=name, addr_spec=addr)), addr


def envelope_sender(settings: MailSettings) -> str:
    """The bounce address: MAILER_ENVELOPE_FROM, else the From address."""
    if settings.envelope_from:
        return _bare_address(settings.envelope_from)
    return from_address(settings)[1]


@functools.lru_cache(maxsize=16)
def _bare_address(configured: str) -> str:
    """A configured address, checked once."""
    return address_of(configured).addr_spec


def list_id(settings: MailSettings) -> str:
    """The List-Id: MAILER_LIST_ID, else derived from MAILER_BASE_URL's host."""
    configured = check_header(settings.list_id, "MAILER_LIST_ID")
    if configured:
        return configured if "<" in configured else f"<{configured.strip()}>"
    host = urlsplit(settings.base_url).hostname or "localhost"
    return f"<newsletter.{host}>"


def list_unsubscribe(url: str, settings: MailSettings) -> str:
    """The List-Unsubscribe value: the https link, and a mailto if configured."""
    value = f"<{check_url(url, 'unsubscribe link')}>"
    if settings.unsubscribe_mailto:
        value += (
            f", <mailto:{address_of(settings.unsubscribe_mailto).addr_spec}?subject=unsubscribe>"
        )
    return value
