"""Builds each kind of message from a delivery row, at send time."""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid, parseaddr

from flask import current_app, render_template

from .backends import Message
from .models import Delivery, DeliveryKind, Digest, Subscriber, utcnow
from .tokens import Purpose, link

# Long List-Unsubscribe URLs must reach the wire unfolded (see the design notes).
WIRE_POLICY = SMTP.clone(max_line_length=998)


@dataclass
class RenderCache:
    """What a batch of sends can share: digests loaded and rendered once."""

    digests: dict[int, Digest] = field(default_factory=dict)


def message_id_for(delivery: Delivery) -> str:
    """The delivery's Message-ID, fixed at its first attempt and reused on retry."""
    if delivery.message_id is None:
        domain = parseaddr(current_app.config["MAILER_FROM"])[1].rpartition("@")[2] or "localhost"
        delivery.message_id = make_msgid(idstring=f"d{delivery.id}", domain=domain)
    return delivery.message_id


def recipient_of(delivery: Delivery, subscriber: Subscriber | None) -> str:
    """Where a delivery goes: its own address if set, else the subscriber's."""
    if delivery.to_address:
        return delivery.to_address
    if subscriber is None:
        raise ValueError(f"delivery {delivery.id} has no recipient")
    return subscriber.email


def render_delivery(
    delivery: Delivery, subscriber: Subscriber | None, cache: RenderCache
) -> Message:
    """The finished message for one delivery row."""
    to = recipient_of(delivery, subscriber)
    if delivery.kind == DeliveryKind.CONFIRMATION and subscriber is not None:
        subject = "Please confirm your subscription"
        context: dict[str, object] = {"confirm_url": link(Purpose.CONFIRM, subscriber)}
    elif delivery.kind == DeliveryKind.DIGEST and delivery.digest_id is not None:
        digest = cache.digests.get(delivery.digest_id)
        if digest is None:
            from .extensions import db

            digest = db.session.get(Digest, delivery.digest_id)
            if digest is None:
                raise ValueError(f"delivery {delivery.id}: digest is gone")
            cache.digests[delivery.digest_id] = digest
        subject = digest.subject
        context = {"digest": digest}
    else:
        subject = "A message from Documentaries"
        context = {}
    if subscriber is not None:
        context["unsubscribe_url"] = link(Purpose.UNSUBSCRIBE, subscriber)
    text = render_template("email/basic.txt", subject=subject, **context)
    html = render_template("email/basic.html", subject=subject, **context)
    email = EmailMessage(policy=WIRE_POLICY)
    email["From"] = current_app.config["MAILER_FROM"]
    email["To"] = to
    email["Subject"] = subject
    email["Date"] = format_datetime(utcnow())
    email["Message-ID"] = message_id_for(delivery)
    email.set_content(text)
    email.add_alternative(html, subtype="html")
    sender = parseaddr(current_app.config["MAILER_FROM"])[1]
    return Message(sender, (to,), email.as_bytes(), email["Message-ID"])
