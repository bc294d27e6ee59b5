"""Sending services' webhooks: prove each request came from the provider, read its bounces.

One reader per provider turns a request (body and headers) into a Reading: the ids that make a
replay recognisable and the bounces and complaints it reports, each normalised to an
address, a kind (hard, soft, complaint), a diagnostic and a time. A request that cannot be
proven genuine raises Refused; nothing here touches the database.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import http.client
import json
import logging
import re
import ssl
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

log = logging.getLogger(__name__)

HARD, SOFT, COMPLAINT = "hard", "soft", "complaint"  # the values of models.BounceKind
# Signed timestamps older than this are refused: a captured request cannot be sent again later.
MAX_AGE = timedelta(minutes=5)
# SNS signs when it first published the message and retries with that time, for up to an hour.
SNS_MAX_AGE = timedelta(hours=1)
MAX_SKEW = timedelta(minutes=5)  # a timestamp this far in the future is our clock's fault
# Where AWS serves SNS signing certificates (as AWS documents for verifying messages).
SNS_CERT_HOST = r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?"
CERT_MAX_BYTES = 64 * 1024
CERT_CACHE_SIZE = 32
FETCH_TIMEOUT = 10.0


class Refused(Exception):
    """The request is not accepted; ``status`` is the HTTP answer, the message says why."""

    status = 401

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Unauthenticated(Refused):
    """No valid signature or credentials."""

    status = 401


class Forbidden(Refused):
    """Genuinely signed, but not to be accepted: stale, replayed, a topic not ours."""

    status = 403


class Malformed(Refused):
    """Authenticated, but not a body the provider sends."""

    status = 400


class ProviderUnreachable(Exception):
    """A call back to the provider (confirming an SNS subscription) failed; it will retry."""


@dataclass(frozen=True)
class WebhookRequest:
    """What the intake needs of an HTTP request: its body and headers (names in lower case)."""

    body: bytes
    headers: Mapping[str, str]

    def header(self, name: str) -> str:
        """A header's value, '' if absent."""
        return self.headers.get(name.lower(), "")


@dataclass(frozen=True)
class ProviderEvent:
    """One bounce or complaint as a provider reports it."""

    replay_key: str  # the provider's id of the request or event: accepted once only
    address: str
    kind: str  # hard, soft or complaint
    diagnostic: str
    when: datetime
    status: str = ""  # the enhanced status code, e.g. 5.1.1
    message_id: str = ""  # our Message-ID, when the provider passes it back
    envelope_sender: str = ""  # the return (VERP) address the mail was sent with


@dataclass(frozen=True)
class Reading:
    """What one genuine request says: ids that may never come again, and its events."""

    replay_keys: tuple[str, ...]
    events: tuple[ProviderEvent, ...] = ()
    # What the provider asked of us beyond events (an SNS subscription confirmed), for the log.
    note: str = ""


@dataclass(frozen=True)
class ProviderSettings:
    """The secrets and switches the readers need, taken from the app's config."""

    ses_topics: frozenset[str] = frozenset()
    mailgun_key: str = ""
    postmark_auth: str = ""
    sendgrid_key: str = ""
    ses_cert_host: str = SNS_CERT_HOST
    # Trusted CAs for fetching from SNS: the system's unless a test serves its own.
    tls_context: ssl.SSLContext | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ProviderSettings:
        """The settings of one app."""
        return cls(
            ses_topics=frozenset(config.get("MAILER_WEBHOOK_SES_TOPICS") or ()),
            mailgun_key=config.get("MAILER_WEBHOOK_MAILGUN_KEY") or "",
            postmark_auth=config.get("MAILER_WEBHOOK_POSTMARK_AUTH") or "",
            sendgrid_key=config.get("MAILER_WEBHOOK_SENDGRID_KEY") or "",
            ses_cert_host=config.get("WEBHOOK_SES_CERT_HOST") or SNS_CERT_HOST,
            tls_context=config.get("WEBHOOK_TLS_CONTEXT"),
        )

    def configured(self, provider: str) -> bool:
        """Whether this installation takes webhooks from ``provider``."""
        return bool(
            {
                "ses": self.ses_topics,
                "mailgun": self.mailgun_key,
                "postmark": self.postmark_auth,
                "sendgrid": self.sendgrid_key,
            }.get(provider)
        )


Reader = Callable[[WebhookRequest, ProviderSettings, datetime], Reading]


# --- shared helpers -----------------------------------------------------------------------------


def _json(body: bytes) -> Any:
    """The body as JSON, or Malformed."""
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Malformed(f"the body is not JSON ({exc})") from None


def _text(value: Any) -> str:
    """A value as text ('' for nothing), for fields a provider may send as numbers or null."""
    return "" if value is None else str(value)


def _epoch(value: Any) -> datetime:
    """A Unix timestamp (a number or its text) as UTC, or Malformed."""
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        raise Malformed(f"not a timestamp: {value!r}") from None


def _iso(value: Any) -> datetime:
    """An ISO 8601 time (any number of fraction digits) as UTC, or Malformed."""
    text = _text(value).strip()
    # Postmark and .NET write seven fraction digits; Python reads at most six.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise Malformed(f"not a time: {value!r}") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _fresh(signed_at: datetime, now: datetime, max_age: timedelta) -> None:
    """Refuse a signed time too old (a replay) or too far ahead (not a real one)."""
    if signed_at < now - max_age:
        raise Forbidden(f"stale timestamp {signed_at.isoformat()}: older than {max_age}")
    if signed_at > now + MAX_SKEW:
        raise Forbidden(f"timestamp {signed_at.isoformat()} is in the future")


def _object(value: Any, what: str) -> dict[str, Any]:
    """A JSON object, or Malformed naming what it should have been."""
    if not isinstance(value, dict):
        raise Malformed(f"{what} is not a JSON object")
    return value


def _part(data: dict[str, Any], key: str) -> dict[str, Any]:
    """An optional nested object ({} where it is missing or not an object)."""
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _bracketed(message_id: str) -> str:
    """A Message-ID in its angle brackets, as we send and store it."""
    message_id = message_id.strip()
    if not message_id:
        return ""
    return message_id if message_id.startswith("<") else f"<{message_id}>"


# --- Amazon SES through SNS ---------------------------------------------------------------------

_SNS_SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
_SNS_SIGNED_FIELDS["UnsubscribeConfirmation"] = _SNS_SIGNED_FIELDS["SubscriptionConfirmation"]
_SNS_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "1": hashes.SHA1,
    "2": hashes.SHA256,
}

_certificates: OrderedDict[str, x509.Certificate] = OrderedDict()
_certificates_lock = threading.Lock()


def _https_get(url: str, context: ssl.SSLContext | None) -> bytes:
    """GET an https URL (no redirects followed: the host was checked) and return its body."""
    parts = urlsplit(url)
    connection = http.client.HTTPSConnection(
        parts.hostname or "",
        parts.port,
        timeout=FETCH_TIMEOUT,
        context=context or ssl.create_default_context(),
    )
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request("GET", path or "/")
        response = connection.getresponse()
        body = response.read(CERT_MAX_BYTES + 1)
        if response.status != 200:
            raise OSError(f"{url} answered {response.status}")
        return body
    finally:
        connection.close()


def _sns_url(url: str, settings: ProviderSettings, what: str) -> str:
    """Refuse a URL SNS would not send us to: https on an SNS host only."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme != "https" or not re.fullmatch(settings.ses_cert_host, host):
        raise Unauthenticated(f"{what} {url!r} is not https on an SNS host")
    return url


def _sns_certificate(url: str, settings: ProviderSettings) -> x509.Certificate:
    """The signing certificate at ``url``: fetched once, then kept."""
    with _certificates_lock:
        if url in _certificates:
            _certificates.move_to_end(url)
            return _certificates[url]
    try:
        pem = _https_get(url, settings.tls_context)
        if len(pem) > CERT_MAX_BYTES:
            raise ValueError("larger than a certificate")
        certificate = x509.load_pem_x509_certificate(pem)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise Unauthenticated(f"signing certificate {url} unusable ({exc})") from None
    with _certificates_lock:
        _certificates[url] = certificate
        while len(_certificates) > CERT_CACHE_SIZE:
            _certificates.popitem(last=False)
    return certificate


def _verify_sns(message: dict[str, Any], settings: ProviderSettings, now: datetime) -> None:
    """Check an SNS message's signature against the certificate it names."""
    kind = _text(message.get("Type"))
    signed_fields = _SNS_SIGNED_FIELDS.get(kind)
    if signed_fields is None:
        raise Malformed(f"unknown SNS message type {kind!r}")
    make_hash = _SNS_HASHES.get(_text(message.get("SignatureVersion")))
    if make_hash is None:
        raise Unauthenticated(f"unknown SignatureVersion {message.get('SignatureVersion')!r}")
    url = _sns_url(_text(message.get("SigningCertURL")), settings, "SigningCertURL")
    try:
        signature = base64.b64decode(_text(message.get("Signature")), validate=True)
    except binascii.Error:
        raise Unauthenticated("the Signature is not base64") from None
    signed = "".join(
        f"{name}\n{message[name]}\n" for name in signed_fields if message.get(name) is not None
    ).encode()
    certificate = _sns_certificate(url, settings)
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise Unauthenticated(f"signing certificate {url} is not valid now")
    public_key = certificate.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise Unauthenticated("the signing certificate's key is not RSA")
    try:
        public_key.verify(signature, signed, padding.PKCS1v15(), make_hash())
    except InvalidSignature:
        raise Unauthenticated("bad SNS signature") from None


def read_ses(request: WebhookRequest, settings: ProviderSettings, now: datetime) -> Reading:
    """An SNS message carrying SES bounce and complaint notifications, or a subscription."""
    message = _object(_json(request.body), "the SNS message")
    _verify_sns(message, settings, now)
    _fresh(_iso(message.get("Timestamp")), now, SNS_MAX_AGE)
    topic = _text(message.get("TopicArn"))
    if topic not in settings.ses_topics:
        raise Forbidden(f"topic {topic!r} is not in MAILER_WEBHOOK_SES_TOPICS")
    message_id = _text(message.get("MessageId"))
    if not message_id:
        raise Malformed("the SNS message has no MessageId")
    keys = (message_id,)
    kind = message["Type"]
    if kind == "SubscriptionConfirmation":
        url = _sns_url(_text(message.get("SubscribeURL")), settings, "SubscribeURL")
        try:
            _https_get(url, settings.tls_context)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise ProviderUnreachable(f"confirming the subscription to {topic}: {exc}") from None
        return Reading(keys, note=f"subscription to {topic} confirmed")
    if kind == "UnsubscribeConfirmation":
        return Reading(keys, note=f"unsubscribed from {topic}")
    try:
        notification = _object(json.loads(_text(message.get("Message"))), "the SES notification")
    except json.JSONDecodeError:
        raise Malformed("the SNS Message is not an SES notification") from None
    return Reading(keys, tuple(_ses_events(message_id, notification)))


def _ses_events(key: str, notification: dict[str, Any]) -> list[ProviderEvent]:
    """The bounced or complaining recipients of one SES notification (other types: none)."""
    kind = notification.get("notificationType") or notification.get("eventType")
    mail = _part(notification, "mail")
    headers = _part(mail, "commonHeaders")
    common = {
        "replay_key": key,
        "message_id": _bracketed(_text(headers.get("messageId"))),
        "envelope_sender": _text(mail.get("source")),
    }
    if kind == "Bounce":
        bounce = _object(notification.get("bounce"), "bounce")
        severity = HARD if bounce.get("bounceType") == "Permanent" else SOFT
        when = _iso(bounce.get("timestamp"))
        subtype = f"{bounce.get('bounceType')}/{bounce.get('bounceSubType')}"
        return [
            ProviderEvent(
                address=_text(r.get("emailAddress")),
                kind=severity,
                diagnostic=_text(r.get("diagnosticCode")) or subtype,
                status=_text(r.get("status")),
                when=when,
                **common,
            )
            for r in bounce.get("bouncedRecipients") or ()
            if isinstance(r, dict) and r.get("emailAddress")
        ]
    if kind == "Complaint":
        complaint = _object(notification.get("complaint"), "complaint")
        when = _iso(complaint.get("timestamp"))
        feedback = _text(complaint.get("complaintFeedbackType")) or "complaint"
        return [
            ProviderEvent(
                address=_text(r.get("emailAddress")),
                kind=COMPLAINT,
                diagnostic=f"SES complaint: {feedback}",
                when=when,
                **common,
            )
            for r in complaint.get("complainedRecipients") or ()
            if isinstance(r, dict) and r.get("emailAddress")
        ]
    return []


# --- Mailgun ------------------------------------------------------------------------------------


def read_mailgun(request: WebhookRequest, settings: ProviderSettings, now: datetime) -> Reading:
    """A Mailgun webhook: HMAC-SHA256 of timestamp and token, one event per request."""
    payload = _object(_json(request.body), "the Mailgun webhook")
    signature = payload.get("signature")
    if not isinstance(signature, dict):
        raise Unauthenticated("no signature")
    timestamp, token = _text(signature.get("timestamp")), _text(signature.get("token"))
    expected = hmac.new(
        settings.mailgun_key.encode(), (timestamp + token).encode(), hashlib.sha256
    ).hexdigest()
    if not token or not hmac.compare_digest(expected, _text(signature.get("signature"))):
        raise Unauthenticated("bad Mailgun signature")
    _fresh(_epoch(timestamp), now, MAX_AGE)
    data = _object(payload.get("event-data"), "event-data")
    event = data.get("event")
    if event == "failed":
        kind = HARD if data.get("severity") == "permanent" else SOFT
    elif event == "complained":
        kind = COMPLAINT
    else:
        return Reading((token,))
    status = _part(data, "delivery-status")
    message = _part(data, "message")
    headers = _part(message, "headers")
    envelope = _part(data, "envelope")
    diagnostic = " ".join(
        part
        for part in (
            _text(status.get("code")),
            _text(status.get("message")) or _text(status.get("description")),
        )
        if part
    )
    return Reading(
        (token,),
        (
            ProviderEvent(
                replay_key=token,
                address=_text(data.get("recipient")),
                kind=kind,
                diagnostic=diagnostic or _text(data.get("reason")) or f"Mailgun {event}",
                status=_text(status.get("enhanced-code")),
                when=_epoch(data.get("timestamp", timestamp)),
                message_id=_bracketed(_text(headers.get("message-id"))),
                envelope_sender=_text(envelope.get("sender")),
            ),
        ),
    )


# --- Postmark -----------------------------------------------------------------------------------

_POSTMARK_KINDS = {
    "HardBounce": HARD,
    "BadEmailAddress": HARD,
    "SoftBounce": SOFT,
    "Transient": SOFT,
    "DnsError": SOFT,
    "Blocked": SOFT,
    "SpamComplaint": COMPLAINT,
}


def _basic_auth(header: str) -> str:
    """The 'user:password' of an HTTP basic Authorization header ('' if there is none)."""
    scheme, _space, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return ""
    try:
        return base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return ""


def read_postmark(request: WebhookRequest, settings: ProviderSettings, now: datetime) -> Reading:
    """A Postmark bounce or spam-complaint webhook, behind HTTP basic auth."""
    given = _basic_auth(request.header("Authorization"))
    if not hmac.compare_digest(given.encode(), settings.postmark_auth.encode()):
        raise Unauthenticated("bad or missing basic-auth credentials")
    payload = _object(_json(request.body), "the Postmark webhook")
    event_id = _text(payload.get("ID"))
    if not event_id:
        raise Malformed("the Postmark webhook has no ID")
    key = f"{payload.get('RecordType')}:{event_id}"
    kind = _POSTMARK_KINDS.get(_text(payload.get("Type")))
    if payload.get("RecordType") not in ("Bounce", "SpamComplaint") or kind is None:
        return Reading((key,))
    diagnostic = " ".join(
        part for part in (_text(payload.get("Description")), _text(payload.get("Details"))) if part
    )
    return Reading(
        (key,),
        (
            ProviderEvent(
                replay_key=key,
                address=_text(payload.get("Email")),
                kind=kind,
                diagnostic=diagnostic or _text(payload.get("Type")),
                when=_iso(payload.get("BouncedAt")) if payload.get("BouncedAt") else now,
            ),
        ),
    )


# --- SendGrid -----------------------------------------------------------------------------------

SENDGRID_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"


def sendgrid_public_key(value: str) -> ec.EllipticCurvePublicKey:
    """The verification key SendGrid shows (base64 DER), or ValueError."""
    key = load_der_public_key(base64.b64decode(value, validate=True))
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError("not an ECDSA P-256 public key")
    return key


def read_sendgrid(request: WebhookRequest, settings: ProviderSettings, now: datetime) -> Reading:
    """A SendGrid signed event webhook: ECDSA P-256 over timestamp and body, a batch of events."""
    timestamp = request.header(SENDGRID_TIMESTAMP)
    try:
        signature = base64.b64decode(request.header(SENDGRID_SIGNATURE), validate=True)
        sendgrid_public_key(settings.sendgrid_key).verify(
            signature, timestamp.encode() + request.body, ec.ECDSA(hashes.SHA256())
        )
    except (binascii.Error, ValueError, InvalidSignature):
        raise Unauthenticated("bad or missing SendGrid signature") from None
    _fresh(_epoch(timestamp), now, MAX_AGE)
    batch = _json(request.body)
    if not isinstance(batch, list):
        raise Malformed("the SendGrid webhook is not a list of events")
    keys: list[str] = []
    events: list[ProviderEvent] = []
    for item in batch:
        data = _object(item, "a SendGrid event")
        key = _text(data.get("sg_event_id"))
        if not key:
            raise Malformed("a SendGrid event has no sg_event_id")
        keys.append(key)
        kind = _sendgrid_kind(data)
        if kind is None:
            continue
        events.append(
            ProviderEvent(
                replay_key=key,
                address=_text(data.get("email")),
                kind=kind,
                diagnostic=_text(data.get("reason")) or f"SendGrid {data.get('event')}",
                status=_text(data.get("status")),
                when=_epoch(data.get("timestamp", timestamp)),
                message_id=_bracketed(_text(data.get("smtp-id"))),
            )
        )
    return Reading(tuple(keys), tuple(events))


def _sendgrid_kind(data: dict[str, Any]) -> str | None:
    """The kind of a SendGrid event, or None for events that are no bounce."""
    event, reason = data.get("event"), _text(data.get("reason")).lower()
    if event == "bounce":
        return SOFT if data.get("type") == "blocked" else HARD
    if event == "spamreport":
        return COMPLAINT
    if event == "dropped":
        # Dropped: SendGrid would not even try, because of what it knows of the address.
        if "spam reporting" in reason:
            return COMPLAINT
        if "bounced address" in reason or "invalid" in reason:
            return HARD
        return None
    return None


READERS: dict[str, Reader] = {
    "ses": read_ses,
    "mailgun": read_mailgun,
    "postmark": read_postmark,
    "sendgrid": read_sendgrid,
}
