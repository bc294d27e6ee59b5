"""Subscription pages: the form, no enumeration, rate limits, links, one-click, privacy."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
import time_machine
from sqlalchemy import func, select

from mailer.extensions import db, limiter
from mailer.journal import queue_message
from mailer.models import (
    ConsentAction,
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
    ConsentContext,
    confirm,
    find_subscriber,
    import_subscriber,
    subscribe,
    unsubscribe,
)
from mailer.suppressions import suppress
from mailer.tokens import Purpose, make_token
from tests.conftest import csrf_token_from

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BOTH = ["digest", "early_access"]


@pytest.fixture(autouse=True)
def fresh_limits(app):
    limiter.reset()
    yield
    limiter.reset()


def form_token(client, url: str = "/subscribe") -> str:
    return csrf_token_from(client.get(url).get_data(as_text=True))


def post_subscribe(client, email: str, **extra):
    data = {"csrf_token": form_token(client), "email": email, "topics": BOTH, **extra}
    return client.post("/subscribe", data=data, headers={"User-Agent": "TestBrowser/1.0"})


def make(app, email: str, status: SubscriberStatus) -> Subscriber:
    """A subscriber in the given state, made through the domain functions."""
    with app.app_context():
        subscribe(email, BOTH, ConsentContext(), NOW)
        sub = find_subscriber(email)
        assert sub is not None
        if status != SubscriberStatus.PENDING:
            confirm(sub, ConsentContext(), NOW)
        if status == SubscriberStatus.UNSUBSCRIBED:
            unsubscribe(sub, NOW, None)
        db.session.commit()
        db.session.refresh(sub)
        db.session.expunge(sub)
        return sub


def token_for(app, purpose: Purpose, email: str) -> str:
    with app.app_context():
        sub = find_subscriber(email)
        assert sub is not None
        return make_token(purpose, sub)


def state(app) -> list[tuple]:
    """Every subscriber, delivery and suppression, to show that nothing changed."""
    with app.app_context():
        subs = db.session.execute(
            select(Subscriber.email, Subscriber.status, Subscriber.nonce, Subscriber.wants_digest)
        ).all()
        dels = db.session.execute(select(Delivery.kind, Delivery.status)).all()
        sups = db.session.execute(select(Suppression.email_hash)).all()
        return sorted(map(tuple, subs)) + sorted(map(tuple, dels)) + sorted(map(tuple, sups))


def status_of(app, email: str) -> str | None:
    with app.app_context():
        sub = find_subscriber(email)
        return None if sub is None else sub.status


def kinds(app) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(Delivery.kind).order_by(Delivery.id)))


# --- the form ------------------------------------------------------------------------------


def test_landing_page_and_subscribe_page_carry_the_form(client) -> None:
    for url in ("/", "/subscribe"):
        html = client.get(url).get_data(as_text=True)
        assert 'name="email"' in html and 'name="csrf_token"' in html
        assert 'name="website"' in html  # the honeypot
        assert CONSENT_TEXT in html
        assert html.count('name="topics"') == 2 and html.count("checked") >= 2


def test_subscribe_journals_a_confirmation_and_records_consent(app, client) -> None:
    response = post_subscribe(client, "Reader@Example.org")
    assert response.status_code == 303
    assert response.headers["Location"] == "/subscribe/check-your-inbox"
    assert "Check your inbox" in client.get(response.headers["Location"]).get_data(as_text=True)
    assert kinds(app) == [DeliveryKind.CONFIRMATION]
    with app.app_context():
        sub = find_subscriber("reader@example.org")
        assert sub is not None and sub.status == SubscriberStatus.PENDING
        [event] = sub.consent_events
        assert event.consent_text == CONSENT_TEXT
        assert event.user_agent == "TestBrowser/1.0"
        assert event.ip == "127.0.0.1"
        assert event.form == "web"


def test_missing_csrf_token_is_refused(app, client) -> None:
    response = client.post("/subscribe", data={"email": "a@example.org", "topics": BOTH})
    assert response.status_code == 400
    assert "Traceback" not in response.get_data(as_text=True)
    assert state(app) == []


def test_csrf_token_of_another_session_is_refused(app, client) -> None:
    someone_elses = form_token(app.test_client())
    form_token(client)  # this visitor has a session, with a token of its own
    data = {"csrf_token": someone_elses, "email": "a@example.org", "topics": BOTH}
    response = client.post("/subscribe", data=data)
    assert response.status_code == 400
    assert state(app) == []


def test_honeypot_gets_the_same_answer_and_nothing_happens(app, client) -> None:
    response = post_subscribe(client, "bot@example.org", website="http://spam.example")
    assert (response.status_code, response.headers["Location"]) == (
        303,
        "/subscribe/check-your-inbox",
    )
    assert state(app) == []


@pytest.mark.parametrize(
    "email",
    [
        "reader@example.org\r\nBcc: victim@example.org",
        "reader@example.org\nSubject: hello",
        "Bcc: victim@example.org",
        "a" * 250 + "@example.org",
        "a" * 65 + "@example.org",
        "not an address",
    ],
)
def test_bad_address_is_shown_on_the_form_and_writes_nothing(app, client, email: str) -> None:
    response = post_subscribe(client, email)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert 'class="field-error"' in html and 'aria-invalid="true"' in html
    assert "Traceback" not in html
    assert state(app) == []


def test_no_topic_is_refused(app, client) -> None:
    data = {"csrf_token": form_token(client), "email": "a@example.org"}
    response = client.post("/subscribe", data=data)
    assert response.status_code == 400
    assert "choose at least one" in response.get_data(as_text=True)
    assert state(app) == []


def test_every_kind_of_address_gets_the_same_response(app, client) -> None:
    make(app, "pending@example.org", SubscriberStatus.PENDING)
    make(app, "confirmed@example.org", SubscriberStatus.CONFIRMED)
    make(app, "left@example.org", SubscriberStatus.UNSUBSCRIBED)
    with app.app_context():
        suppress("blocked@example.org", SuppressionReason.COMPLAINT, NOW)
        db.session.commit()
    answers = set()
    for email in (
        "new@example.org",
        "pending@example.org",
        "confirmed@example.org",
        "left@example.org",
        "blocked@example.org",
    ):
        response = post_subscribe(client, email)
        page = client.get(response.headers["Location"])
        answers.add(
            (
                response.status_code,
                response.headers["Location"],
                response.get_data(),
                page.status_code,
                page.get_data(),
            )
        )
    assert len(answers) == 1
    assert status_of(app, "left@example.org") == SubscriberStatus.PENDING
    assert status_of(app, "blocked@example.org") is None


def test_per_address_limit_gives_a_friendly_429(app, client) -> None:
    app.config["MAILER_SUBSCRIBE_LIMIT_PER_ADDRESS"] = "2 per hour"
    assert post_subscribe(client, "target@example.org").status_code == 303
    assert post_subscribe(client, "Target@example.org ").status_code == 303
    response = post_subscribe(client, "target@example.org")
    assert response.status_code == 429
    html = response.get_data(as_text=True)
    assert "Please wait a moment" in html and "Traceback" not in html
    assert int(response.headers["Retry-After"]) > 0
    # Other addresses from the same visitor are not held up by this one.
    assert post_subscribe(client, "other@example.org").status_code == 303


def test_per_ip_limit_gives_a_friendly_429(app, client) -> None:
    app.config["MAILER_SUBSCRIBE_LIMIT_PER_IP"] = "3 per hour"
    for n in range(3):
        assert post_subscribe(client, f"r{n}@example.org").status_code == 303
    response = post_subscribe(client, "r9@example.org")
    assert response.status_code == 429
    assert "Please wait a moment" in response.get_data(as_text=True)
    assert status_of(app, "r9@example.org") is None
    other = app.test_client()
    other_ip = {"REMOTE_ADDR": "198.51.100.9"}
    page = other.get("/subscribe", environ_base=other_ip).get_data(as_text=True)
    data = {"csrf_token": csrf_token_from(page), "email": "r9@example.org", "topics": BOTH}
    assert other.post("/subscribe", data=data, environ_base=other_ip).status_code == 303


# --- confirm -------------------------------------------------------------------------------


def test_confirm_get_changes_nothing_and_post_confirms(app, client) -> None:
    make(app, "p@example.org", SubscriberStatus.PENDING)
    token = token_for(app, Purpose.CONFIRM, "p@example.org")
    before = state(app)
    page = client.get(f"/confirm/{token}")
    assert page.status_code == 200 and "Yes, subscribe me" in page.get_data(as_text=True)
    assert state(app) == before
    csrf = csrf_token_from(page.get_data(as_text=True))
    response = client.post(f"/confirm/{token}", data={"csrf_token": csrf})
    assert response.status_code == 200
    assert "You are subscribed" in response.get_data(as_text=True)
    assert status_of(app, "p@example.org") == SubscriberStatus.CONFIRMED
    assert kinds(app) == [DeliveryKind.CONFIRMATION, DeliveryKind.WELCOME]
    # Replayed: the same success page, nothing new.
    again = client.post(f"/confirm/{token}", data={"csrf_token": csrf})
    assert again.status_code == 200 and "You are subscribed" in again.get_data(as_text=True)
    assert kinds(app) == [DeliveryKind.CONFIRMATION, DeliveryKind.WELCOME]
    with app.app_context():
        sub = find_subscriber("p@example.org")
        assert sub is not None
        event = sub.consent_events[-1]
        assert event.action == ConsentAction.CONFIRM and event.ip == "127.0.0.1"


def test_confirm_post_without_csrf_changes_nothing(app, client) -> None:
    make(app, "p@example.org", SubscriberStatus.PENDING)
    token = token_for(app, Purpose.CONFIRM, "p@example.org")
    response = client.post(f"/confirm/{token}")
    assert response.status_code == 400
    assert status_of(app, "p@example.org") == SubscriberStatus.PENDING


@pytest.mark.parametrize("method", ["get", "post"])
def test_tampered_and_wrong_purpose_links_are_plainly_invalid(app, client, method: str) -> None:
    make(app, "p@example.org", SubscriberStatus.PENDING)
    good = token_for(app, Purpose.CONFIRM, "p@example.org")
    unsub = token_for(app, Purpose.UNSUBSCRIBE, "p@example.org")
    prefs = token_for(app, Purpose.PREFERENCES, "p@example.org")
    csrf = form_token(client)
    before = state(app)
    tampered = good[:-3] + ("xyz" if not good.endswith("xyz") else "abc")
    for url in (
        f"/confirm/{tampered}",
        f"/confirm/{unsub}",
        f"/unsubscribe/{good}",
        f"/preferences/{unsub}",
        f"/address/{prefs}",
        "/confirm/not-a-token",
    ):
        response = getattr(client, method)(url, data={"csrf_token": csrf})
        html = response.get_data(as_text=True)
        assert response.status_code == 400, url
        assert "This link is not valid" in html and "Traceback" not in html
    assert state(app) == before


def test_expired_link_offers_a_fresh_one_without_saying_anything(app, client) -> None:
    make(app, "p@example.org", SubscriberStatus.PENDING)
    make(app, "c@example.org", SubscriberStatus.CONFIRMED)
    with time_machine.travel(datetime(2026, 3, 1, 12, tzinfo=UTC), tick=False):
        pending_token = token_for(app, Purpose.CONFIRM, "p@example.org")
        confirmed_token = token_for(app, Purpose.CONFIRM, "c@example.org")
    with time_machine.travel(datetime(2026, 3, 10, 12, tzinfo=UTC), tick=False):
        pages = [client.get(f"/confirm/{t}") for t in (pending_token, confirmed_token)]
        assert {p.status_code for p in pages} == {200}
        bodies = [p.get_data(as_text=True) for p in pages]
        assert "This link has expired" in bodies[0] and "Send me a fresh link" in bodies[0]
        assert bodies[0].replace(pending_token, "T") == bodies[1].replace(confirmed_token, "T")
        csrf = csrf_token_from(bodies[0])
        before = state(app)
        # POSTing an expired link confirms nothing.
        client.post(f"/confirm/{pending_token}", data={"csrf_token": csrf})
        assert state(app) == before
        answers = [
            client.post(f"/confirm/{t}/resend", data={"csrf_token": csrf})
            for t in (pending_token, confirmed_token)
        ]
    assert answers[0].get_data() == answers[1].get_data()
    assert {a.status_code for a in answers} == {200}
    assert kinds(app).count(DeliveryKind.CONFIRMATION) == 3  # two at subscribe, one fresh
    assert status_of(app, "p@example.org") == SubscriberStatus.PENDING


# --- unsubscribe ---------------------------------------------------------------------------


def test_unsubscribe_get_changes_nothing(app, client) -> None:
    make(app, "c@example.org", SubscriberStatus.CONFIRMED)
    token = token_for(app, Purpose.UNSUBSCRIBE, "c@example.org")
    before = state(app)
    page = client.get(f"/unsubscribe/{token}")
    assert page.status_code == 200 and "Unsubscribe me" in page.get_data(as_text=True)
    assert state(app) == before


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_one_click_unsubscribe(app, encoding: str) -> None:
    sub = make(app, "c@example.org", SubscriberStatus.CONFIRMED)
    with app.app_context():
        queue_message(DeliveryKind.DIGEST, db.session.get(Subscriber, sub.id), NOW)
        db.session.commit()
    token = token_for(app, Purpose.UNSUBSCRIBE, "c@example.org")
    content_type = (
        "application/x-www-form-urlencoded" if encoding == "urlencoded" else "multipart/form-data"
    )
    mail_provider = app.test_client(use_cookies=False)
    for _ in range(2):  # repeating is harmless
        response = mail_provider.post(
            f"/unsubscribe/{token}",
            data={"List-Unsubscribe": "One-Click"},
            content_type=content_type,
        )
        assert response.status_code == 200
        assert "Location" not in response.headers
        assert "You are unsubscribed" in response.get_data(as_text=True)
    assert status_of(app, "c@example.org") == SubscriberStatus.UNSUBSCRIBED
    with app.app_context():
        statuses = db.session.scalars(
            select(Delivery.status).where(Delivery.kind == DeliveryKind.DIGEST)
        ).all()
        assert statuses == [DeliveryStatus.SKIPPED]
        found = db.session.get(Subscriber, sub.id)
        assert found is not None
        assert found.consent_events[-1].form == "one-click"


def test_old_unsubscribe_link_of_someone_who_came_back_unsubscribes_again(app, client) -> None:
    make(app, "c@example.org", SubscriberStatus.CONFIRMED)
    token = token_for(app, Purpose.UNSUBSCRIBE, "c@example.org")
    assert client.post(f"/unsubscribe/{token}").status_code == 200
    # Subscribing again needs a fresh double opt-in.
    post_subscribe(client, "c@example.org")
    assert status_of(app, "c@example.org") == SubscriberStatus.PENDING
    # The link lives as long as its mail, and it can only ever unsubscribe.
    assert client.post(f"/unsubscribe/{token}").status_code == 200
    assert status_of(app, "c@example.org") == SubscriberStatus.UNSUBSCRIBED
    post_subscribe(client, "c@example.org")
    confirm_token = token_for(app, Purpose.CONFIRM, "c@example.org")
    csrf = form_token(client)
    client.post(f"/confirm/{confirm_token}", data={"csrf_token": csrf})
    assert status_of(app, "c@example.org") == SubscriberStatus.CONFIRMED
    old = client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert old.status_code == 200
    assert status_of(app, "c@example.org") == SubscriberStatus.UNSUBSCRIBED


# --- preferences, address, export, erase ---------------------------------------------------


def test_preferences_change_topics(app, client) -> None:
    make(app, "c@example.org", SubscriberStatus.CONFIRMED)
    token = token_for(app, Purpose.PREFERENCES, "c@example.org")
    before = state(app)
    page = client.get(f"/preferences/{token}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "c@example.org" in html
    assert state(app) == before
    csrf = csrf_token_from(html)
    response = client.post(
        f"/preferences/{token}", data={"csrf_token": csrf, "topics": ["early_access"]}
    )
    assert response.status_code == 303
    assert "Your choices are saved" in client.get(response.headers["Location"]).get_data(
        as_text=True
    )
    with app.app_context():
        sub = find_subscriber("c@example.org")
        assert sub is not None
        assert (sub.wants_digest, sub.wants_early_access) == (False, True)
    refused = client.post(f"/preferences/{token}", data={"csrf_token": csrf})
    assert refused.status_code == 400
    assert client.post(f"/preferences/{token}", data={"topics": ["digest"]}).status_code == 400


def test_expired_preferences_link(app, client) -> None:
    make(app, "c@example.org", SubscriberStatus.CONFIRMED)
    with time_machine.travel(datetime(2026, 1, 1, tzinfo=UTC), tick=False):
        token = token_for(app, Purpose.PREFERENCES, "c@example.org")
    with time_machine.travel(datetime(2027, 6, 1, tzinfo=UTC), tick=False):
        response = client.get(f"/preferences/{token}")
    assert response.status_code == 410
    assert "This link has expired" in response.get_data(as_text=True)


def test_address_change_through_the_pages(app, client) -> None:
    make(app, "old@example.org", SubscriberStatus.CONFIRMED)
    token = token_for(app, Purpose.PREFERENCES, "old@example.org")
    csrf = csrf_token_from(client.get(f"/preferences/{token}").get_data(as_text=True))
    bad = client.post(
        f"/preferences/{token}/address",
        data={"csrf_token": csrf, "new_email": "new@example.org\r\nBcc: x@example.org"},
    )
    assert bad.status_code == 400 and "line breaks" in bad.get_data(as_text=True)
    asked = client.post(
        f"/preferences/{token}/address", data={"csrf_token": csrf, "new_email": "New@example.org"}
    )
    assert asked.status_code == 200 and "Check the new inbox" in asked.get_data(as_text=True)
    with app.app_context():
        ask = db.session.scalars(
            select(Delivery).where(Delivery.kind == DeliveryKind.ADDRESS_CONFIRMATION)
        ).one()
        assert ask.to_address == "new@example.org"
    address_token = token_for(app, Purpose.ADDRESS, "old@example.org")
    before = state(app)
    page = client.get(f"/address/{address_token}")
    assert page.status_code == 200 and "new@example.org" in page.get_data(as_text=True)
    assert state(app) == before
    done = client.post(f"/address/{address_token}", data={"csrf_token": csrf})
    assert done.status_code == 200 and "Your address is changed" in done.get_data(as_text=True)
    assert status_of(app, "new@example.org") == SubscriberStatus.CONFIRMED
    assert status_of(app, "old@example.org") is None
    with app.app_context():
        told = db.session.scalars(
            select(Delivery).where(Delivery.kind == DeliveryKind.ADDRESS_CHANGED)
        ).one()
        assert told.to_address == "old@example.org"
    # Replayed: the nonce moved on, so the link and the old preferences link are dead.
    assert client.post(f"/address/{address_token}", data={"csrf_token": csrf}).status_code == 400
    assert client.get(f"/preferences/{token}").status_code == 400


def test_download_my_data(app, client) -> None:
    make(app, "c@example.org", SubscriberStatus.CONFIRMED)
    token = token_for(app, Purpose.PREFERENCES, "c@example.org")
    csrf = csrf_token_from(client.get(f"/preferences/{token}").get_data(as_text=True))
    assert client.post(f"/preferences/{token}/export").status_code == 400  # no CSRF token
    response = client.post(f"/preferences/{token}/export", data={"csrf_token": csrf})
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert "attachment" in response.headers["Content-Disposition"]
    data = json.loads(response.get_data(as_text=True))
    assert data["profile"]["email"] == "c@example.org"
    assert [e["action"] for e in data["consent"]] == ["subscribe", "confirm"]
    assert [d["kind"] for d in data["deliveries"]] == ["confirmation", "welcome"]


def test_erase_me_then_an_import_is_refused(app, client) -> None:
    make(app, "c@example.org", SubscriberStatus.CONFIRMED)
    token = token_for(app, Purpose.PREFERENCES, "c@example.org")
    csrf = csrf_token_from(client.get(f"/preferences/{token}").get_data(as_text=True))
    unticked = client.post(f"/preferences/{token}/erase", data={"csrf_token": csrf})
    assert unticked.status_code == 400 and "Tick the box" in unticked.get_data(as_text=True)
    assert status_of(app, "c@example.org") == SubscriberStatus.CONFIRMED
    response = client.post(f"/preferences/{token}/erase", data={"csrf_token": csrf, "confirm": "y"})
    assert response.status_code == 200 and "Your data is erased" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Subscriber)) == 0
        entry = db.session.scalars(select(Suppression)).one()
        assert entry.email is None and entry.reason == SuppressionReason.ERASED
        with pytest.raises(AddressSuppressed):
            import_subscriber("c@example.org", BOTH, ConsentContext(), NOW, False)
    assert client.get(f"/preferences/{token}").status_code == 400
    # Subscribing again through the form looks the same as ever, and adds nothing.
    assert post_subscribe(client, "c@example.org").status_code == 303
    assert status_of(app, "c@example.org") is None


def test_no_get_changes_state(app, client) -> None:
    make(app, "p@example.org", SubscriberStatus.PENDING)
    make(app, "c@example.org", SubscriberStatus.CONFIRMED)
    with app.app_context():
        sub = find_subscriber("c@example.org")
        assert sub is not None
        sub.pending_email = "next@example.org"
        db.session.commit()
    urls = [
        f"/confirm/{token_for(app, Purpose.CONFIRM, 'p@example.org')}",
        f"/unsubscribe/{token_for(app, Purpose.UNSUBSCRIBE, 'c@example.org')}",
        f"/preferences/{token_for(app, Purpose.PREFERENCES, 'c@example.org')}",
        f"/address/{token_for(app, Purpose.ADDRESS, 'c@example.org')}",
        "/subscribe",
        "/subscribe/check-your-inbox",
        "/",
    ]
    before = state(app)
    for url in urls:
        for _ in range(2):
            assert client.get(url).status_code == 200, url
            assert client.head(url).status_code == 200, url
    assert state(app) == before


def test_pages_hold_no_inline_script_and_no_address_in_links(app, client) -> None:
    make(app, "c@example.org", SubscriberStatus.CONFIRMED)
    token = token_for(app, Purpose.PREFERENCES, "c@example.org")
    html = client.get(f"/preferences/{token}").get_data(as_text=True)
    assert "<script" not in html and " style=" not in html
    for link in re.findall(r'href="([^"]+)"', html):
        assert "c@example.org" not in link
