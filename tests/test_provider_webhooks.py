"""POST /webhooks/<provider>: each provider's genuine requests are taken in, others refused.

Every provider is signed for real: SES's SNS messages with an RSA key whose certificate a local
https server (with its own CA) hands out, Mailgun's with HMAC, SendGrid's with ECDSA P-256,
Postmark's with basic auth. For each: a valid request ends in the bounce policy (an address
suppressed for a hard bounce or a complaint, a soft one counted), and an invalid signature, a
replay and a stale timestamp are refused and recorded.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import ssl
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from mailer.config import mail_settings
from mailer.emails.deliveries import message_id_for
from mailer.extensions import db
from mailer.models import (
    Bounce,
    BounceKind,
    Delivery,
    DeliveryKind,
    Subscriber,
    SubscriberStatus,
    Suppression,
    SuppressionReason,
    WebhookEventSeen,
    WebhookRefusal,
    utcnow,
)
from mailer.provider_events import SNS_CERT_HOST
from mailer.verp import verp_address
from tests.factories import add_subscribers

TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-bounces"
MAILGUN_KEY = "key-" + "3f" * 16
POSTMARK_AUTH = "postmark:" + "p" * 24
READER = "reader00000@example.org"
OTHER = "reader00001@example.org"


# --- a local https server standing in for SNS ------------------------------------------------


class SnsStandIn:
    """An https server on 127.0.0.1 with a test CA: serves a signing certificate, notes GETs."""

    def __init__(self, ca: trustme.CA, certificate_pem: bytes) -> None:
        self.visited: list[str] = []
        # A path of its own: certificates are kept by URL, and a later server may get this port.
        self.certificate_path = f"/SimpleNotificationService-{secrets.token_hex(8)}.pem"
        served, visited = certificate_pem, self.visited

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                visited.append(self.path)
                body = served if self.path.endswith(".pem") else b"<ConfirmSubscriptionResponse/>"
                self.send_response(503 if "unavailable" in self.path else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("localhost").configure_cert(context)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"https://localhost:{self.server.server_address[1]}{path}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture(scope="module")
def sns_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def signing_certificate(key: rsa.RSAPrivateKey, now: datetime) -> bytes:
    """A self-signed certificate for the SNS signing key, valid around ``now``."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def sns(sns_key: rsa.RSAPrivateKey) -> Iterator[tuple[SnsStandIn, ssl.SSLContext]]:
    ca = trustme.CA()
    server = SnsStandIn(ca, signing_certificate(sns_key, utcnow()))
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    yield server, client_context
    server.stop()


@pytest.fixture
def sendgrid_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def hooks(
    app: Flask,
    sns: tuple[SnsStandIn, ssl.SSLContext],
    sendgrid_key: ec.EllipticCurvePrivateKey,
) -> FlaskClient:
    """A client of an app that takes webhooks from all four providers; two subscribers."""
    public = sendgrid_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    app.config.update(
        MAILER_WEBHOOK_SES_TOPICS=[TOPIC],
        MAILER_WEBHOOK_MAILGUN_KEY=MAILGUN_KEY,
        MAILER_WEBHOOK_POSTMARK_AUTH=POSTMARK_AUTH,
        MAILER_WEBHOOK_SENDGRID_KEY=base64.b64encode(public).decode(),
        # The local stand-in for SNS; production accepts only SNS_CERT_HOST.
        WEBHOOK_SES_CERT_HOST="localhost",
        WEBHOOK_TLS_CONTEXT=sns[1],
    )
    with app.app_context():
        add_subscribers(2, now=utcnow() - timedelta(days=30))
    return app.test_client()


# --- what the database holds afterwards ---------------------------------------------------------


def bounces(app: Flask) -> list[tuple[str, str, str]]:
    """(address, kind, source) of every bounce recorded."""
    with app.app_context():
        rows = db.session.execute(
            select(Bounce.address, Bounce.kind, Bounce.source).order_by(Bounce.id)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


def suppressed(app: Flask) -> dict[str | None, str]:
    """Suppressed address -> reason."""
    with app.app_context():
        return dict(db.session.execute(select(Suppression.email, Suppression.reason)).all())


def refusals(app: Flask) -> list[tuple[str, int, str]]:
    """(provider, status, reason) of every refused request."""
    with app.app_context():
        rows = db.session.execute(
            select(WebhookRefusal.provider, WebhookRefusal.status_code, WebhookRefusal.reason)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


def assert_refused(app: Flask, response: Any, status: int, provider: str, reason: str) -> None:
    """The request was answered ``status`` and recorded with a reason matching ``reason``."""
    assert response.status_code == status, response.get_data(as_text=True)
    recorded = refusals(app)
    assert len(recorded) == 1, recorded
    assert recorded[0][:2] == (provider, status)
    assert re.search(reason, recorded[0][2]), recorded[0][2]


# --- Amazon SES through SNS ---------------------------------------------------------------------


def sns_message(
    server: SnsStandIn,
    key: rsa.RSAPrivateKey,
    notification: dict[str, Any] | None = None,
    *,
    kind: str = "Notification",
    version: str = "1",
    at: datetime | None = None,
    topic: str = TOPIC,
    subscribe_path: str = "/?Action=ConfirmSubscription&Token=",
) -> dict[str, Any]:
    """An SNS message signed as SNS signs it (SignatureVersion 1: SHA1, 2: SHA256)."""
    message: dict[str, Any] = {
        "Type": kind,
        "MessageId": secrets.token_hex(16),
        "TopicArn": topic,
        "Message": json.dumps(notification) if notification else "You have chosen to subscribe",
        "Timestamp": (at or utcnow()).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "SignatureVersion": version,
        "SigningCertURL": server.url(server.certificate_path),
    }
    if kind == "SubscriptionConfirmation":
        message["Token"] = secrets.token_hex(32)
        message["SubscribeURL"] = server.url(subscribe_path + message["Token"])
        fields = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
    else:
        fields = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
    signed = "".join(f"{f}\n{message[f]}\n" for f in fields if f in message).encode()
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()
    message["Signature"] = base64.b64encode(key.sign(signed, padding.PKCS1v15(), digest)).decode()
    return message


def ses_bounce(address: str, bounce_type: str = "Permanent") -> dict[str, Any]:
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": address,
                    "action": "failed",
                    "status": "5.1.1" if bounce_type == "Permanent" else "4.2.2",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                }
            ],
            "timestamp": utcnow().isoformat(),
            "feedbackId": secrets.token_hex(8),
        },
        "mail": {"messageId": "ses-1", "source": "news@example.org"},
    }


def post_sns(client: FlaskClient, message: dict[str, Any]) -> Any:
    return client.post(
        "/webhooks/ses",
        data=json.dumps(message),
        headers={"Content-Type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": "x"},
    )


@pytest.mark.parametrize("version", ["1", "2"])
def test_ses_permanent_bounce_suppresses_the_address(
    app: Flask, hooks: FlaskClient, sns: tuple[SnsStandIn, ssl.SSLContext], sns_key, version
) -> None:
    message = sns_message(sns[0], sns_key, ses_bounce(READER), version=version)
    response = post_sns(hooks, message)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert bounces(app) == [(READER, BounceKind.HARD, "ses")]
    assert suppressed(app) == {READER: SuppressionReason.HARD_BOUNCE}
    assert refusals(app) == []


def test_ses_transient_bounce_is_counted_not_suppressed(
    app: Flask, hooks: FlaskClient, sns: tuple[SnsStandIn, ssl.SSLContext], sns_key
) -> None:
    response = post_sns(hooks, sns_message(sns[0], sns_key, ses_bounce(READER, "Transient")))
    assert response.status_code == 200
    assert bounces(app) == [(READER, BounceKind.SOFT, "ses")]
    assert suppressed(app) == {}


def test_ses_complaint_unsubscribes_and_suppresses(
    app: Flask, hooks: FlaskClient, sns: tuple[SnsStandIn, ssl.SSLContext], sns_key
) -> None:
    complaint = {
        "notificationType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": OTHER}],
            "timestamp": utcnow().isoformat(),
            "complaintFeedbackType": "abuse",
        },
        "mail": {"messageId": "ses-2"},
    }
    response = post_sns(hooks, sns_message(sns[0], sns_key, complaint, version="2"))
    assert response.status_code == 200
    assert bounces(app) == [(OTHER, BounceKind.COMPLAINT, "ses")]
    assert suppressed(app) == {OTHER: SuppressionReason.COMPLAINT}
    with app.app_context():
        status = db.session.scalar(select(Subscriber.status).where(Subscriber.email == OTHER))
    assert status == SubscriberStatus.UNSUBSCRIBED


def test_ses_tampered_message_is_refused_and_recorded(
    app: Flask, hooks: FlaskClient, sns: tuple[SnsStandIn, ssl.SSLContext], sns_key
) -> None:
    message = sns_message(sns[0], sns_key, ses_bounce(READER))
    message["Message"] = json.dumps(ses_bounce(OTHER))
    assert_refused(app, post_sns(hooks, message), 401, "ses", "bad SNS signature")
    assert bounces(app) == [] and suppressed(app) == {}


def test_ses_message_signed_by_another_key_is_refused(
    app: Flask, hooks: FlaskClient, sns: tuple[SnsStandIn, ssl.SSLContext]
) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    message = sns_message(sns[0], stranger, ses_bounce(READER))
    assert_refused(app, post_sns(hooks, message), 401, "ses", "bad SNS signature")


def test_ses_replayed_message_is_refused(
    app: Flask, hooks: FlaskClient, sns: tuple[SnsStandIn, ssl.SSLContext], sns_key
) -> None:
    message = sns_message(sns[0], sns_key, ses_bounce(READER, "Transient"))
    assert post_sns(hooks, message).status_code == 200
    assert_refused(app, post_sns(hooks, message), 403, "ses", "replayed")
    assert bounces(app) == [(READER, BounceKind.SOFT, "ses")], "counted once"


def test_ses_stale_message_is_refused(
    app: Flask, hooks: FlaskClient, sns: tuple[SnsStandIn, ssl.SSLContext], sns_key
) -> None:
    old = utcnow() - timedelta(hours=2)
    message = sns_message(sns[0], sns_key, ses_bounce(READER), at=old)
    assert_refused(app, post_sns(hooks, message), 403, "ses", "stale timestamp")
    assert bounces(app) == []


def test_ses_certificate_is_fetched_once(
    app: Flask, hooks: FlaskClient, sns: tuple[SnsStandIn, ssl.SSLContext], sns_key
) -> None:
    for address in (READER, OTHER):
        assert post_sns(hooks, sns_message(sns[0], sns_key, ses_bounce(address))).status_code == 200
    assert sns[0].visited == [sns[0].certificate_path]


def test_ses_topic_not_listed_is_refused(
    app: Flask, hooks: FlaskClient, sns: tuple[SnsStandIn, ssl.SSLContext], sns_key
) -> None:
    foreign = "arn:aws:sns:eu-west-1:999999999999:someone-else"
    message = sns_message(sns[0], sns_key, ses_bounce(READER), topic=foreign)
    assert_refused(app, post_sns(hooks, message), 403, "ses", "not in MAILER_WEBHOOK_SES_TOPICS")


def test_ses_subscription_is_confirmed_for_a_listed_topic_only(
    app: Flask, hooks: FlaskClient, sns: tuple[SnsStandIn, ssl.SSLContext], sns_key
) -> None:
    server = sns[0]
    foreign = sns_message(
        server, sns_key, kind="SubscriptionConfirmation", topic=TOPIC.replace("123", "999")
    )
    assert_refused(app, post_sns(hooks, foreign), 403, "ses", "not in MAILER_WEBHOOK_SES_TOPICS")
    assert not any("ConfirmSubscription" in path for path in server.visited)

    ours = sns_message(server, sns_key, kind="SubscriptionConfirmation")
    assert post_sns(hooks, ours).status_code == 200
    assert server.visited[-1] == f"/?Action=ConfirmSubscription&Token={ours['Token']}"


def test_ses_unreachable_certificate_is_refused(
    app: Flask, hooks: FlaskClient, sns: tuple[SnsStandIn, ssl.SSLContext], sns_key
) -> None:
    message = sns_message(sns[0], sns_key, ses_bounce(READER))
    message["SigningCertURL"] = sns[0].url("/unavailable.pem")
    assert_refused(app, post_sns(hooks, message), 401, "ses", "unavailable.pem unusable")
    assert bounces(app) == []


def test_ses_failed_confirmation_is_a_502_for_sns_to_retry(
    app: Flask, hooks: FlaskClient, sns: tuple[SnsStandIn, ssl.SSLContext], sns_key
) -> None:
    kind = "SubscriptionConfirmation"
    failing = sns_message(sns[0], sns_key, kind=kind, subscribe_path="/unavailable?Token=")
    assert post_sns(hooks, failing).status_code == 502
    assert refusals(app) == []
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(WebhookEventSeen)) == 0


def test_ses_certificate_from_a_foreign_host_is_refused_unfetched(
    app: Flask, hooks: FlaskClient, sns: tuple[SnsStandIn, ssl.SSLContext], sns_key
) -> None:
    """The production host pattern: only https on sns.<region>.amazonaws.com."""
    app.config["WEBHOOK_SES_CERT_HOST"] = None
    message = sns_message(sns[0], sns_key, ses_bounce(READER))
    assert_refused(app, post_sns(hooks, message), 401, "ses", "not https on an SNS host")
    assert sns[0].visited == []


@pytest.mark.parametrize(
    ("host", "trusted"),
    [
        ("sns.us-east-1.amazonaws.com", True),
        ("sns.eu-west-1.amazonaws.com", True),
        ("sns.cn-north-1.amazonaws.com.cn", True),
        ("sns.us-east-1.amazonaws.com.evil.example", False),
        ("evil-sns.us-east-1.amazonaws.com", False),
        ("sns.us-east-1.amazonaws.com:443@evil.example", False),
        ("s3.amazonaws.com", False),
        ("localhost", False),
    ],
)
def test_sns_certificate_host_pattern(host: str, trusted: bool) -> None:
    assert bool(re.fullmatch(SNS_CERT_HOST, host)) is trusted


# --- Mailgun ------------------------------------------------------------------------------------


def mailgun_body(
    event: dict[str, Any], *, key: str = MAILGUN_KEY, at: datetime | None = None
) -> dict[str, Any]:
    timestamp = str(int((at or utcnow()).timestamp()))
    token = secrets.token_hex(25)
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": {"timestamp": float(timestamp), "id": secrets.token_hex(8), **event},
    }


def mailgun_failed(address: str, severity: str = "permanent") -> dict[str, Any]:
    return {
        "event": "failed",
        "severity": severity,
        "recipient": address,
        "reason": "bounce",
        "delivery-status": {"code": 550, "message": "5.1.1 mailbox unavailable"},
        "message": {"headers": {"message-id": "20261204.1@example.org"}},
    }


@pytest.mark.parametrize(
    ("event", "kind", "reason"),
    [
        (mailgun_failed(READER), BounceKind.HARD, SuppressionReason.HARD_BOUNCE),
        (mailgun_failed(READER, "temporary"), BounceKind.SOFT, None),
        ({"event": "complained", "recipient": READER}, BounceKind.COMPLAINT, "complaint"),
    ],
)
def test_mailgun_events_reach_the_bounce_policy(
    app: Flask, hooks: FlaskClient, event: dict[str, Any], kind: str, reason: str | None
) -> None:
    response = hooks.post("/webhooks/mailgun", json=mailgun_body(event))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert bounces(app) == [(READER, kind, "mailgun")]
    assert suppressed(app) == ({READER: reason} if reason else {})


def test_mailgun_other_events_are_accepted_and_ignored(app: Flask, hooks: FlaskClient) -> None:
    body = mailgun_body({"event": "delivered", "recipient": READER})
    assert hooks.post("/webhooks/mailgun", json=body).status_code == 200
    assert bounces(app) == []


def test_mailgun_bad_signature_is_refused_and_recorded(app: Flask, hooks: FlaskClient) -> None:
    body = mailgun_body(mailgun_failed(READER), key="key-" + "00" * 16)
    response = hooks.post("/webhooks/mailgun", json=body)
    assert_refused(app, response, 401, "mailgun", "bad Mailgun signature")
    assert bounces(app) == []
    with app.app_context():
        refusal = db.session.scalars(select(WebhookRefusal)).one()
    assert refusal.remote_addr == "127.0.0.1"
    assert READER in refusal.body_excerpt


def test_mailgun_replayed_token_is_refused(app: Flask, hooks: FlaskClient) -> None:
    body = mailgun_body(mailgun_failed(READER, "temporary"))
    assert hooks.post("/webhooks/mailgun", json=body).status_code == 200
    assert_refused(app, hooks.post("/webhooks/mailgun", json=body), 403, "mailgun", "replayed")
    assert len(bounces(app)) == 1


def test_mailgun_stale_timestamp_is_refused(app: Flask, hooks: FlaskClient) -> None:
    body = mailgun_body(mailgun_failed(READER), at=utcnow() - timedelta(minutes=6))
    response = hooks.post("/webhooks/mailgun", json=body)
    assert_refused(app, response, 403, "mailgun", "stale timestamp")
    assert bounces(app) == []


# --- Postmark -----------------------------------------------------------------------------------


def postmark_auth(credentials: str = POSTMARK_AUTH) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


def postmark_bounce(address: str, kind: str = "HardBounce") -> dict[str, Any]:
    record = "SpamComplaint" if kind == "SpamComplaint" else "Bounce"
    return {
        "RecordType": record,
        "ID": secrets.randbelow(10**15),
        "Type": kind,
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Description": "The server was unable to deliver your message",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist",
        "Email": address,
        "BouncedAt": "2026-12-04T16:33:54.9070259Z",
    }


@pytest.mark.parametrize(
    ("kind", "bounce_kind", "reason"),
    [
        ("HardBounce", BounceKind.HARD, SuppressionReason.HARD_BOUNCE),
        ("SoftBounce", BounceKind.SOFT, None),
        ("SpamComplaint", BounceKind.COMPLAINT, SuppressionReason.COMPLAINT),
    ],
)
def test_postmark_events_reach_the_bounce_policy(
    app: Flask, hooks: FlaskClient, kind: str, bounce_kind: str, reason: str | None
) -> None:
    body = postmark_bounce(READER, kind)
    response = hooks.post("/webhooks/postmark", json=body, headers=postmark_auth())
    assert response.status_code == 200, response.get_data(as_text=True)
    assert bounces(app) == [(READER, bounce_kind, "postmark")]
    assert suppressed(app) == ({READER: reason} if reason else {})


@pytest.mark.parametrize(
    "headers",
    [{}, postmark_auth("postmark:wrong-password-000000"), {"Authorization": "Bearer x"}],
    ids=["none", "wrong", "not-basic"],
)
def test_postmark_without_the_credentials_is_refused(
    app: Flask, hooks: FlaskClient, headers: dict[str, str]
) -> None:
    response = hooks.post("/webhooks/postmark", json=postmark_bounce(READER), headers=headers)
    assert_refused(app, response, 401, "postmark", "basic-auth")
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert bounces(app) == []


def test_postmark_replayed_event_is_refused(app: Flask, hooks: FlaskClient) -> None:
    body = postmark_bounce(READER, "SoftBounce")
    assert hooks.post("/webhooks/postmark", json=body, headers=postmark_auth()).status_code == 200
    response = hooks.post("/webhooks/postmark", json=body, headers=postmark_auth())
    assert_refused(app, response, 403, "postmark", "replayed")
    assert len(bounces(app)) == 1


# Postmark signs nothing and stamps no request time: the credentials and the event's ID are all
# there is to check, so it has no stale-timestamp test.


# --- SendGrid -----------------------------------------------------------------------------------


def sendgrid_post(
    client: FlaskClient,
    key: ec.EllipticCurvePrivateKey,
    events: list[dict[str, Any]],
    *,
    at: datetime | None = None,
    tamper: bool = False,
) -> Any:
    body = json.dumps(events).encode()
    timestamp = str(int((at or utcnow()).timestamp()))
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return client.post(
        "/webhooks/sendgrid",
        data=body.replace(READER.encode(), OTHER.encode()) if tamper else body,
        headers={
            "Content-Type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        },
    )


def sendgrid_event(address: str, event: str, **extra: str) -> dict[str, Any]:
    return {
        "email": address,
        "timestamp": int(utcnow().timestamp()),
        "event": event,
        "sg_event_id": secrets.token_urlsafe(16),
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        **extra,
    }


def test_sendgrid_batch_reaches_the_bounce_policy(
    app: Flask, hooks: FlaskClient, sendgrid_key: ec.EllipticCurvePrivateKey
) -> None:
    with app.app_context():
        add_subscribers(2, now=utcnow(), prefix="more")
    third, fourth = "more00000@example.org", "more00001@example.org"
    events = [
        sendgrid_event(READER, "bounce", type="bounce", status="5.1.1", reason="550 unknown"),
        sendgrid_event(OTHER, "bounce", type="blocked", status="4.0.0", reason="blocked"),
        sendgrid_event(third, "spamreport"),
        sendgrid_event(fourth, "dropped", reason="Bounced Address", status="5.0.0"),
        sendgrid_event(READER, "delivered"),
    ]
    response = sendgrid_post(hooks, sendgrid_key, events)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"accepted": 4}
    assert bounces(app) == [
        (READER, BounceKind.HARD, "sendgrid"),
        (OTHER, BounceKind.SOFT, "sendgrid"),
        (third, BounceKind.COMPLAINT, "sendgrid"),
        (fourth, BounceKind.HARD, "sendgrid"),
    ]
    assert suppressed(app) == {
        READER: SuppressionReason.HARD_BOUNCE,
        third: SuppressionReason.COMPLAINT,
        fourth: SuppressionReason.HARD_BOUNCE,
    }


def test_sendgrid_bad_signature_is_refused_and_recorded(
    app: Flask, hooks: FlaskClient, sendgrid_key: ec.EllipticCurvePrivateKey
) -> None:
    events = [sendgrid_event(READER, "bounce", type="bounce")]
    response = sendgrid_post(hooks, sendgrid_key, events, tamper=True)
    assert_refused(app, response, 401, "sendgrid", "bad or missing SendGrid signature")
    stranger = ec.generate_private_key(ec.SECP256R1())
    sendgrid_post(hooks, stranger, events)
    assert len(refusals(app)) == 2
    assert bounces(app) == []


def test_sendgrid_replayed_batch_is_refused_and_new_events_only_are_taken(
    app: Flask, hooks: FlaskClient, sendgrid_key: ec.EllipticCurvePrivateKey
) -> None:
    first = sendgrid_event(READER, "bounce", type="blocked")
    assert sendgrid_post(hooks, sendgrid_key, [first]).status_code == 200
    assert_refused(app, sendgrid_post(hooks, sendgrid_key, [first]), 403, "sendgrid", "replayed")
    second = sendgrid_event(OTHER, "bounce", type="blocked")
    assert sendgrid_post(hooks, sendgrid_key, [first, second]).get_json() == {"accepted": 2}
    assert bounces(app) == [
        (READER, BounceKind.SOFT, "sendgrid"),
        (OTHER, BounceKind.SOFT, "sendgrid"),
    ]


def test_sendgrid_stale_timestamp_is_refused(
    app: Flask, hooks: FlaskClient, sendgrid_key: ec.EllipticCurvePrivateKey
) -> None:
    events = [sendgrid_event(READER, "bounce", type="bounce")]
    response = sendgrid_post(hooks, sendgrid_key, events, at=utcnow() - timedelta(minutes=6))
    assert_refused(app, response, 403, "sendgrid", "stale timestamp")
    assert bounces(app) == []


# --- the intake itself --------------------------------------------------------------------------


def test_unknown_or_unconfigured_provider_is_not_found(app: Flask, hooks: FlaskClient) -> None:
    assert hooks.post("/webhooks/carrier-pigeon", json={}).status_code == 404
    app.config["MAILER_WEBHOOK_MAILGUN_KEY"] = ""
    assert hooks.post("/webhooks/mailgun", json=mailgun_body({})).status_code == 404
    assert refusals(app) == []


def test_oversized_body_is_refused_unread(app: Flask, hooks: FlaskClient) -> None:
    response = hooks.post(
        "/webhooks/postmark", data=b"[" + b" " * (1024 * 1024) + b"]", headers=postmark_auth()
    )
    assert_refused(app, response, 413, "postmark", "body over")


def test_unreadable_bodies_are_a_400_and_recorded(app: Flask, hooks: FlaskClient) -> None:
    response = hooks.post("/webhooks/postmark", data=b"\xff{not json", headers=postmark_auth())
    assert_refused(app, response, 400, "postmark", "not JSON")
    body = postmark_bounce("nul\x00@example.org")
    response = hooks.post("/webhooks/postmark", json=body, headers=postmark_auth())
    assert response.status_code == 400
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(WebhookEventSeen)) == 0
        excerpts = db.session.scalars(select(WebhookRefusal.body_excerpt)).all()
    assert all("\x00" not in excerpt for excerpt in excerpts)
    assert bounces(app) == []


# --- which of our mails an event is about -------------------------------------------------------


def sent_delivery(app: Flask, address: str) -> tuple[int, str]:
    """A test send to ``address`` with its Message-ID, as the sender gives it: (id, Message-ID)."""
    with app.app_context():
        row = Delivery(kind=DeliveryKind.TEST, to_address=address, created_at=utcnow())
        db.session.add(row)
        db.session.flush()
        message_id = message_id_for(row, mail_settings())
        db.session.commit()
        return row.id, message_id


def bounced_deliveries(app: Flask) -> list[int | None]:
    with app.app_context():
        return list(db.session.scalars(select(Bounce.delivery_id).order_by(Bounce.id)))


def test_events_find_their_delivery_by_our_message_id(
    app: Flask, hooks: FlaskClient, sendgrid_key: ec.EllipticCurvePrivateKey
) -> None:
    delivery_id, message_id = sent_delivery(app, READER)
    event = mailgun_failed(READER)
    event["message"] = {"headers": {"message-id": message_id.strip("<>")}}
    assert hooks.post("/webhooks/mailgun", json=mailgun_body(event)).status_code == 200
    forged = message_id.replace("@", "x@")  # our delivery's id, not its Message-ID
    beyond = "<1.2.3.d99999999999@example.org>"  # more than any row id (PostgreSQL: int4)
    events = [
        sendgrid_event(OTHER, "bounce", type="bounce", **{"smtp-id": forged}),
        sendgrid_event(OTHER, "bounce", type="bounce", **{"smtp-id": beyond}),
    ]
    assert sendgrid_post(hooks, sendgrid_key, events).status_code == 200
    assert bounced_deliveries(app) == [delivery_id, None, None]


def test_ses_event_finds_its_delivery_by_the_verp_return_address(
    app: Flask, hooks: FlaskClient, sns: tuple[SnsStandIn, ssl.SSLContext], sns_key
) -> None:
    app.config["MAILER_BOUNCE_ADDRESS"] = "bounces@news.example.org"
    delivery_id, _message_id = sent_delivery(app, READER)
    notification = ses_bounce(READER)
    with app.test_request_context():
        notification["mail"]["source"] = verp_address(delivery_id)
    assert post_sns(hooks, sns_message(sns[0], sns_key, notification)).status_code == 200
    assert bounced_deliveries(app) == [delivery_id]
