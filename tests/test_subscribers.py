"""Subscriber domain functions: validation, double opt-in, address change, export, erase, purge."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from mailer.address_hash import email_hash
from mailer.emails import RenderCache, render_delivery
from mailer.extensions import db
from mailer.journal import queue_message
from mailer.models import (
    ConsentAction,
    ConsentEvent,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Subscriber,
    SubscriberStatus,
    Suppression,
    SuppressionReason,
)
from mailer.subscribers import (
    CONSENT_TEXT,
    AddressSuppressed,
    AddressUnavailable,
    AddressUnchanged,
    ConsentContext,
    ImportResult,
    InvalidAddress,
    InvalidTopics,
    confirm,
    confirm_address_change,
    erase,
    export_data,
    find_subscriber,
    import_subscriber,
    normalise_email,
    purge_unconfirmed,
    request_address_change,
    subscribe,
    unsubscribe,
    update_preferences,
)
from mailer.suppressions import is_suppressed, suppress
from mailer.tokens import Purpose, subscriber_for

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
WEB = ConsentContext(
    ip="203.0.113.7",
    user_agent="Mozilla/5.0 test",
    form="web",
    page_url="http://localhost/",
    consent_text=CONSENT_TEXT,
)
BOTH = ["digest", "early_access"]


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app


def deliveries(kind: DeliveryKind | None = None) -> list[Delivery]:
    query = select(Delivery).order_by(Delivery.id)
    if kind is not None:
        query = query.where(Delivery.kind == kind)
    return list(db.session.scalars(query))


def count(model: type) -> int:
    return int(db.session.scalar(select(func.count()).select_from(model)) or 0)


def confirmed(address: str = "reader@example.org") -> Subscriber:
    subscribe(address, BOTH, WEB, NOW)
    sub = find_subscriber(address)
    assert sub is not None
    confirm(sub, WEB, NOW)
    db.session.commit()
    return sub


# --- addresses -----------------------------------------------------------------------------


def test_normalise_lowercases_and_trims(ctx) -> None:
    assert normalise_email("  Reader.One@Example.ORG ") == "reader.one@example.org"


@pytest.mark.parametrize(
    "raw",
    [
        "reader@example.org\r\nBcc: victim@example.org",
        "reader@example.org\nBcc: victim@example.org",
        "reader@example.org\r",
        "read\x00er@example.org",
        "reader@exa\u2028mple.org",
        "Bcc: victim@example.org",
        "To: a@example.org, b@example.org",
        "reader@example.org, other@example.org",
        "Reader <reader@example.org>",
        "not-an-address",
        "",
        "   ",
        "a" * 65 + "@example.org",  # local part over 64
        "a@" + ("b" * 60 + ".") * 5 + "org",  # over 254 in all
    ],
)
def test_bad_addresses_are_refused_with_a_message(ctx, raw: str) -> None:
    with pytest.raises(InvalidAddress) as caught:
        normalise_email(raw)
    assert str(caught.value)


def test_line_breaks_get_a_clear_message(ctx) -> None:
    with pytest.raises(InvalidAddress, match="line breaks"):
        normalise_email("a@example.org\r\nSubject: hi")


def test_email_hash_is_sha256_of_the_normalised_address(ctx) -> None:
    assert email_hash("a@example.org") == hashlib.sha256(b"a@example.org").hexdigest()


# --- subscribe -----------------------------------------------------------------------------


def test_new_address_is_pending_with_a_journaled_confirmation_and_consent(ctx) -> None:
    subscribe("New@Example.org", ["digest"], WEB, NOW)
    db.session.commit()
    sub = find_subscriber("new@example.org")
    assert sub is not None
    assert sub.status == SubscriberStatus.PENDING
    assert (sub.wants_digest, sub.wants_early_access) == (True, False)
    assert sub.confirmation_sent_at == NOW
    [delivery] = deliveries()
    assert (delivery.kind, delivery.subscriber_id) == (DeliveryKind.CONFIRMATION, sub.id)
    assert delivery.status == DeliveryStatus.QUEUED
    [event] = sub.consent_events
    assert event.action == ConsentAction.SUBSCRIBE
    assert (event.ip, event.user_agent, event.form) == ("203.0.113.7", "Mozilla/5.0 test", "web")
    assert event.consent_text == CONSENT_TEXT
    assert event.at == NOW


def test_confirmation_mail_carries_a_working_confirm_link(ctx) -> None:
    subscribe("new@example.org", BOTH, WEB, NOW)
    db.session.commit()
    [delivery] = deliveries()
    sub = find_subscriber("new@example.org")
    message = render_delivery(delivery, sub, RenderCache())
    body = message.data.decode()
    assert "http://localhost/confirm/" in body
    token = body.split("http://localhost/confirm/", 1)[1].split()[0]
    found, _ = subscriber_for(Purpose.CONFIRM, token)
    assert found.id == sub.id


def test_pending_gets_a_fresh_confirmation_at_most_once_per_interval(ctx) -> None:
    subscribe("p@example.org", BOTH, WEB, NOW)
    subscribe("p@example.org", BOTH, WEB, NOW + timedelta(seconds=30))
    assert len(deliveries(DeliveryKind.CONFIRMATION)) == 1
    later = NOW + timedelta(seconds=ctx.config["MAILER_CONFIRM_RESEND_INTERVAL"])
    subscribe("p@example.org", BOTH, WEB, later)
    assert len(deliveries(DeliveryKind.CONFIRMATION)) == 2


def test_confirmed_address_gets_only_a_rare_notice_and_keeps_its_topics(ctx) -> None:
    sub = confirmed()
    update_preferences(sub, ["early_access"], WEB, NOW)
    subscribe("reader@example.org", ["digest"], WEB, NOW)
    subscribe("reader@example.org", ["digest"], WEB, NOW + timedelta(seconds=5))
    assert len(deliveries(DeliveryKind.CONFIRMATION)) == 1
    [notice] = deliveries(DeliveryKind.ALREADY_SUBSCRIBED)
    assert notice.subscriber_id == sub.id and notice.to_address is None
    assert (sub.wants_digest, sub.wants_early_access) == (False, True)
    assert sub.status == SubscriberStatus.CONFIRMED


def test_unsubscribed_address_starts_a_fresh_double_opt_in(ctx) -> None:
    sub = confirmed()
    unsubscribe(sub, NOW, None)
    later = NOW + timedelta(seconds=1)  # at once, even within the resend interval
    subscribe("reader@example.org", BOTH, WEB, later)
    assert sub.status == SubscriberStatus.PENDING
    assert sub.confirmed_at is None
    assert [d.created_at for d in deliveries(DeliveryKind.CONFIRMATION)] == [NOW, later]
    subscribe("reader@example.org", BOTH, WEB, later)
    assert len(deliveries(DeliveryKind.CONFIRMATION)) == 2


def test_suppressed_address_gets_nothing(ctx) -> None:
    suppress("blocked@example.org", SuppressionReason.COMPLAINT, NOW)
    subscribe("Blocked@example.org", BOTH, WEB, NOW)
    assert find_subscriber("blocked@example.org") is None
    assert deliveries() == []


def test_topics_must_be_known_and_not_empty(ctx) -> None:
    with pytest.raises(InvalidTopics):
        subscribe("a@example.org", [], WEB, NOW)
    with pytest.raises(InvalidTopics):
        subscribe("a@example.org", ["spam"], WEB, NOW)
    assert count(Subscriber) == 0


def test_consent_fields_are_cut_to_size(ctx) -> None:
    huge = ConsentContext(ip="1" * 500, user_agent="U" * 5000, form="f" * 500, page_url="p" * 5000)
    subscribe("big@example.org", BOTH, huge, NOW)
    db.session.commit()
    event = db.session.scalars(select(ConsentEvent)).one()
    assert (len(event.ip), len(event.user_agent), len(event.form)) == (64, 500, 100)


# --- confirm, preferences, unsubscribe ----------------------------------------------------------


def test_confirm_queues_a_welcome_once(ctx) -> None:
    sub = confirmed()
    confirm(sub, WEB, NOW + timedelta(minutes=5))
    assert sub.status == SubscriberStatus.CONFIRMED and sub.confirmed_at == NOW
    assert len(deliveries(DeliveryKind.WELCOME)) == 1
    actions = [e.action for e in sub.consent_events]
    assert actions == [ConsentAction.SUBSCRIBE, ConsentAction.CONFIRM]


def test_unsubscribe_skips_queued_mail_rotates_the_nonce_and_is_repeatable(ctx) -> None:
    sub = confirmed()
    nonce = sub.nonce
    queue_message(DeliveryKind.DIGEST, sub, NOW)
    unsubscribe(sub, NOW, None)
    db.session.commit()
    assert sub.status == SubscriberStatus.UNSUBSCRIBED and sub.nonce != nonce
    assert {d.status for d in deliveries()} == {DeliveryStatus.SKIPPED}
    unsubscribe(sub, NOW + timedelta(hours=1), None)
    assert sub.unsubscribed_at == NOW
    assert [e.action for e in sub.consent_events].count(ConsentAction.UNSUBSCRIBE) == 1


def test_update_preferences_records_the_choice(ctx) -> None:
    sub = confirmed()
    update_preferences(sub, ["digest"], WEB, NOW)
    assert (sub.wants_digest, sub.wants_early_access) == (True, False)
    assert sub.consent_events[-1].details == {"topics": ["digest"]}
    with pytest.raises(InvalidTopics):
        update_preferences(sub, [], WEB, NOW)


# --- address change --------------------------------------------------------------------------


def test_address_change_needs_the_new_address_and_tells_the_old(ctx) -> None:
    sub = confirmed()
    old_nonce = sub.nonce
    request_address_change(sub, "New@Example.org", WEB, NOW)
    assert sub.email == "reader@example.org" and sub.pending_email == "new@example.org"
    [ask] = deliveries(DeliveryKind.ADDRESS_CONFIRMATION)
    assert ask.to_address == "new@example.org"
    assert confirm_address_change(sub, WEB, NOW) == "new@example.org"
    assert sub.email == "new@example.org" and sub.pending_email is None
    assert sub.nonce != old_nonce
    [told] = deliveries(DeliveryKind.ADDRESS_CHANGED)
    assert told.to_address == "reader@example.org"


def test_a_newer_address_request_kills_the_older_link(ctx) -> None:
    sub = confirmed()
    request_address_change(sub, "first@example.org", WEB, NOW)
    nonce = sub.nonce
    request_address_change(sub, "second@example.org", WEB, NOW)
    assert sub.nonce != nonce
    statuses = [d.status for d in deliveries(DeliveryKind.ADDRESS_CONFIRMATION)]
    assert statuses == [DeliveryStatus.SKIPPED, DeliveryStatus.QUEUED]


def test_address_change_to_a_taken_or_same_address(ctx) -> None:
    sub = confirmed()
    confirmed("other@example.org")
    with pytest.raises(AddressUnchanged):
        request_address_change(sub, "Reader@example.org", WEB, NOW)
    with pytest.raises(InvalidAddress):
        request_address_change(sub, "x@example.org\nBcc: y@example.org", WEB, NOW)
    # The requester learns nothing; only the owner of the other mailbox, on confirming, does.
    request_address_change(sub, "other@example.org", WEB, NOW)
    with pytest.raises(AddressUnavailable):
        confirm_address_change(sub, WEB, NOW)
    assert sub.email == "reader@example.org" and sub.pending_email is None


def test_address_change_to_a_suppressed_address_sends_nothing(ctx) -> None:
    sub = confirmed()
    suppress("gone@example.org", SuppressionReason.HARD_BOUNCE, NOW, note="550")
    request_address_change(sub, "gone@example.org", WEB, NOW)
    assert deliveries(DeliveryKind.ADDRESS_CONFIRMATION) == []
    with pytest.raises(AddressUnavailable):
        confirm_address_change(sub, WEB, NOW)


# --- export, erase, import, purge ----------------------------------------------------------


def test_export_has_profile_consent_history_and_deliveries(ctx) -> None:
    sub = confirmed()
    data = export_data(sub)
    json.dumps(data)  # ready for a download as it is
    assert data["profile"]["email"] == "reader@example.org"
    assert data["profile"]["topics"] == ["digest", "early_access"]
    assert [e["action"] for e in data["consent"]] == ["subscribe", "confirm"]
    assert data["consent"][0]["consent_text"] == CONSENT_TEXT
    assert data["consent"][0]["ip"] == "203.0.113.7"
    assert [d["kind"] for d in data["deliveries"]] == ["confirmation", "welcome"]
    assert "nonce" not in json.dumps(data)


def test_erase_keeps_only_a_hash_and_import_cannot_re_add(ctx) -> None:
    sub = confirmed()
    queue_message(DeliveryKind.DIGEST, sub, NOW)
    assert export_data(sub)["consent"] and len(sub.consent_events) == 2  # loaded before erasing
    erase(sub, NOW)
    db.session.commit()
    assert count(Subscriber) == 0 and count(ConsentEvent) == 0
    entry = db.session.scalars(select(Suppression)).one()
    assert entry.email is None and entry.reason == SuppressionReason.ERASED
    assert entry.email_hash == email_hash("reader@example.org")
    for delivery in deliveries():
        assert delivery.subscriber_id is None and delivery.to_address is None
    assert deliveries(DeliveryKind.DIGEST)[0].status == DeliveryStatus.SKIPPED
    with pytest.raises(AddressSuppressed):
        import_subscriber("READER@example.org", BOTH, WEB, NOW, send_confirmation=False)
    subscribe("reader@example.org", BOTH, WEB, NOW)
    assert count(Subscriber) == 0
    assert is_suppressed("reader@example.org")


def test_erase_removes_the_address_from_an_earlier_suppression(ctx) -> None:
    sub = confirmed()
    suppress(sub.email, SuppressionReason.HARD_BOUNCE, NOW, note="550 5.1.1")
    erase(sub, NOW)
    db.session.commit()
    entry = db.session.scalars(select(Suppression)).one()
    assert (entry.email, entry.reason) == (None, SuppressionReason.ERASED)


def test_import_adds_confirmed_or_pending_and_leaves_existing_alone(ctx) -> None:
    admin = ConsentContext(form="admin import", consent_text="Signed up at the festival")
    assert import_subscriber("a@example.org", BOTH, admin, NOW, False) == (
        ImportResult.ADDED_CONFIRMED
    )
    assert import_subscriber("b@example.org", ["digest"], admin, NOW, True) == (
        ImportResult.ADDED_PENDING
    )
    gone = confirmed("c@example.org")
    unsubscribe(gone, NOW, None)
    assert import_subscriber("c@example.org", BOTH, admin, NOW, False) == (
        ImportResult.ALREADY_LISTED
    )
    assert gone.status == SubscriberStatus.UNSUBSCRIBED
    a = find_subscriber("a@example.org")
    assert a is not None and a.status == SubscriberStatus.CONFIRMED and a.source == "import"
    assert a.consent_events[0].action == ConsentAction.IMPORT
    kinds = [(d.kind, d.subscriber_id) for d in deliveries(DeliveryKind.CONFIRMATION)]
    b = find_subscriber("b@example.org")
    assert b is not None and (DeliveryKind.CONFIRMATION, b.id) in kinds
    assert not any(sid == a.id for _, sid in kinds)


def test_purge_deletes_only_long_unconfirmed_addresses(ctx, runner) -> None:
    days = ctx.config["MAILER_PURGE_UNCONFIRMED_DAYS"]
    old = NOW - timedelta(days=days, seconds=1)
    subscribe("old@example.org", BOTH, WEB, old)
    subscribe("fresh@example.org", BOTH, WEB, NOW)
    subscribe("kept@example.org", BOTH, WEB, old)
    kept = find_subscriber("kept@example.org")
    assert kept is not None
    confirm(kept, WEB, old)
    db.session.commit()
    assert purge_unconfirmed(NOW) == 1
    db.session.commit()
    assert find_subscriber("old@example.org") is None
    assert find_subscriber("fresh@example.org") is not None
    assert find_subscriber("kept@example.org") is not None
    assert count(ConsentEvent) == 3  # fresh: 1, kept: 2
    assert len(deliveries()) == 3


def test_purge_command(app, runner) -> None:
    with app.app_context():
        subscribe("old@example.org", BOTH, WEB, datetime(2000, 1, 1, tzinfo=UTC))
        db.session.commit()
    result = runner.invoke(args=["purge-unconfirmed"])
    assert result.exit_code == 0, result.output
    assert "Purged 1 unconfirmed address." in result.output
    with app.app_context():
        assert count(Subscriber) == 0
