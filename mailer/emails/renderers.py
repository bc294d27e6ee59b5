"""One renderer per kind of message, and the two ways in: a delivery row, or the sender's rows."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask_babel import force_locale
from flask_babel import gettext as _

from ..backends import Message
from ..films import in_early_access, is_public
from ..i18n import DEFAULT_LOCALE, supported
from ..models import Delivery, DeliveryKind, Subscriber, SubscriberStatus, utcnow
from ..tokens import Purpose
from .cache import RenderCache, films_in_early_access
from .content import digest_content, early_access_content, film_entry, simple_content
from .deliveries import (
    Journaled,
    Recipient,
    Undeliverable,
    may_see_early,
    message_id_for,
    reader_of,
    recipient_of,
)
from .links import ExampleLinks, Links, PersonalLinks
from .message import Content, build_email, finish
from .prerender import personalised


def _one_off(
    delivery: Delivery, to: str, content: Content, cache: RenderCache, now: datetime
) -> Message:
    """Assemble a single message the slow, simple way."""
    settings = cache.settings
    message_id = message_id_for(delivery, settings)
    email = build_email(content, to, message_id, cache.date_header(now), settings)
    return finish(email.as_bytes(), to, message_id, settings)


def _to_confirm(
    template: str,
    subject: str,
    reader: Subscriber,
    purpose: Purpose,
    cache: RenderCache,
    **context: Any,
) -> Content:
    """A message whose point is one signed link that confirms something (not a list message)."""
    url = PersonalLinks(reader, cache.settings.base_url).url(purpose)
    return simple_content(
        template, subject, None, cache.settings, listed=False, confirm_url=url, **context
    )


def render_confirmation(
    delivery: Delivery, subscriber: Subscriber | None, cache: RenderCache, now: datetime
) -> Message:
    """Double opt-in: the link that confirms the subscription."""
    reader = reader_of(subscriber, delivery)
    content = _to_confirm(
        "confirmation",
        _("Please confirm your subscription"),
        reader,
        Purpose.CONFIRM,
        cache,
        max_age_hours=cache.settings.confirm_max_age // 3600,
    )
    return _one_off(delivery, recipient_of(delivery, reader), content, cache, now)


def render_welcome(
    delivery: Delivery, subscriber: Subscriber | None, cache: RenderCache, now: datetime
) -> Message:
    """After confirming: what to expect, and the films open to early access right now."""
    reader = reader_of(subscriber, delivery)
    settings = cache.settings
    links = PersonalLinks(reader, settings.base_url)
    early = may_see_early(reader)
    entries = (
        [film_entry(f, now, links, early, settings) for f in films_in_early_access(now)]
        if early
        else []
    )
    content = simple_content(
        "welcome",
        _("Welcome to the Documentaries newsletter"),
        links,
        settings,
        listed=True,
        entries=entries,
        wants_digest=reader.wants_digest,
        wants_early_access=reader.wants_early_access,
    )
    return _one_off(delivery, recipient_of(delivery, reader), content, cache, now)


def render_digest(
    delivery: Journaled, subscriber: Recipient | None, cache: RenderCache, now: datetime
) -> Message:
    """A digest for one subscriber, assembled from the batch's pre-rendered bytes."""
    reader = reader_of(subscriber, delivery)
    digest = cache.digest_of(delivery)
    # Each film's state now (public, early, soon) is part of the key, so a cache that outlives
    # a release or an early-access start never serves yesterday's links.
    states = cache.lineup_of(digest.id).states(now)
    early = "e" in states and may_see_early(reader)
    # So is the reader's language: a German reader never gets the English bytes.
    key = ("digest", digest.id, f"{reader.locale}:{'early' if early else 'plain'}:{states}")

    def content(links: Links) -> Content:
        """This digest's words for this variant."""
        return digest_content(digest, now, links, early, cache.settings)

    return personalised(delivery, reader, cache, now, key, content)


def render_early_access(
    delivery: Journaled, subscriber: Recipient | None, cache: RenderCache, now: datetime
) -> Message:
    """The alert that a film opened early, with the subscriber's personal link."""
    reader = reader_of(subscriber, delivery)
    film = cache.film_of(delivery)
    if not may_see_early(reader):
        raise Undeliverable(f"delivery {delivery.id}: subscriber may not see early access")
    if not (in_early_access(film, now) or is_public(film, now)):
        raise Undeliverable(f"delivery {delivery.id}: {film.slug} is not open yet")
    key = (
        "early_access",
        film.id,
        f"{reader.locale}:{'public' if is_public(film, now) else 'early'}",
    )

    def content(links: Links) -> Content:
        """This film's alert."""
        return early_access_content(film, now, links, cache.settings)

    return personalised(delivery, reader, cache, now, key, content)


def render_test(
    delivery: Delivery, subscriber: Subscriber | None, cache: RenderCache, now: datetime
) -> Message:
    """A digest as a confirmed subscriber with both topics gets it, to an admin's address."""
    if not delivery.to_address:
        raise Undeliverable(f"test delivery {delivery.id} has no address")
    digest = cache.digest_of(delivery)
    links = ExampleLinks(cache.settings.base_url)
    content = digest_content(digest, now, links, True, cache.settings, test=True)
    return _one_off(delivery, delivery.to_address, content, cache, now)


def render_already_subscribed(
    delivery: Delivery, subscriber: Subscriber | None, cache: RenderCache, now: datetime
) -> Message:
    """Told to the address itself when someone subscribes it again (never to the visitor)."""
    reader = reader_of(subscriber, delivery)
    confirmed = reader.status == SubscriberStatus.CONFIRMED
    links = PersonalLinks(reader, cache.settings.base_url) if confirmed else None
    content = simple_content(
        "already_subscribed",
        _("You are already subscribed"),
        links,
        cache.settings,
        listed=confirmed,
    )
    return _one_off(delivery, reader.email, content, cache, now)


def render_address_confirmation(
    delivery: Delivery, subscriber: Subscriber | None, cache: RenderCache, now: datetime
) -> Message:
    """To the new address of an address change: the link that confirms it."""
    reader = reader_of(subscriber, delivery)
    if not delivery.to_address:
        raise Undeliverable(f"delivery {delivery.id}: no new address")
    content = _to_confirm(
        "address_confirmation", _("Please confirm your new address"), reader, Purpose.ADDRESS, cache
    )
    return _one_off(delivery, delivery.to_address, content, cache, now)


def render_address_changed(
    delivery: Delivery, subscriber: Subscriber | None, cache: RenderCache, now: datetime
) -> Message:
    """To the old address once the new one is confirmed: a notice, in case it was not you."""
    if not delivery.to_address:
        raise Undeliverable(f"delivery {delivery.id}: no old address")
    content = simple_content(
        "address_changed",
        _("Your newsletter address was changed"),
        None,
        cache.settings,
        listed=False,
    )
    return _one_off(delivery, delivery.to_address, content, cache, now)


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
    with force_locale(_language_of(subscriber)):
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
    with force_locale(_language_of(reader)):
        return renderer(delivery, reader, cache, now)


def _language_of(reader: Recipient | None) -> str:
    """The language a mail to ``reader`` is written in (a test send's admin gets the default)."""
    return DEFAULT_LOCALE if reader is None else supported(reader.locale)
