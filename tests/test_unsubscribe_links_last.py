"""An unsubscribe link works for the life of its mail: after an address change or a comeback
it unsubscribes its own subscriber, and nobody else; a test send's link changes nothing."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from email import message_from_bytes, policy

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import select

from mailer.backends import Message
from mailer.extensions import db, limiter
from mailer.models import (
    ConsentEvent,
    Digest,
    DigestFilm,
    DigestStatus,
    Film,
    Subscriber,
    SubscriberStatus,
)
from mailer.subscribers import erase, find_subscriber
from tests.conftest import csrf_token_from

# Everything is queued at a fixed time in the past, so `mailer deliver` finds it due.
PAST = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LINK = re.compile(r"http://localhost(/[a-z]+/[A-Za-z0-9_.\-]+)")
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


@pytest.fixture(autouse=True)
def fresh_limits(app: Flask):
    limiter.reset()
    yield
    limiter.reset()


def outbox(app: Flask) -> list[Message]:
    return app.extensions["mailer.backend"].outbox  # type: ignore[no-any-return]


def deliver(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["deliver"])
    assert result.exit_code == 0, result.output


def mail_to(app: Flask, address: str, subject_start: str) -> tuple[str, str]:
    """(List-Unsubscribe URL path or "", text) of the newest mail to an address with a subject."""
    for message in reversed(outbox(app)):
        parsed = message_from_bytes(message.data, policy=policy.default)
        if message.recipients == (address,) and str(parsed["Subject"]).startswith(subject_start):
            header = str(parsed.get("List-Unsubscribe", ""))
            found = LINK.search(header)
            text = parsed.get_body(preferencelist=("plain",))
            assert text is not None
            return (found.group(1) if found else ""), text.get_content()
    raise AssertionError(f"no mail {subject_start!r} to {address}")


def first_link(text: str, purpose: str) -> str:
    return next(path for path in LINK.findall(text) if path.startswith(f"/{purpose}/"))


def press(client: FlaskClient, path: str, **data: str) -> str:
    """Open a page and press its button; the answer's text."""
    page = client.get(path)
    assert page.status_code == 200, page.get_data(as_text=True)
    response = client.post(path, data={"csrf_token": csrf_token_from(page.get_data(as_text=True))})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data(as_text=True)


def subscribe_and_confirm(app: Flask, client: FlaskClient, runner: FlaskCliRunner, email: str):
    token = csrf_token_from(client.get("/subscribe").get_data(as_text=True))
    data = {"csrf_token": token, "email": email, "topics": ["digest", "early_access"]}
    assert client.post("/subscribe", data=data).status_code == 303
    deliver(runner)
    _, confirmation = mail_to(app, email, "Please confirm")
    assert "You are subscribed" in press(client, first_link(confirmation, "confirm"))


def change_address(
    app: Flask, client: FlaskClient, runner: FlaskCliRunner, preferences: str, new: str
) -> None:
    """Through the preferences page and the link mailed to the new address."""
    page = client.get(preferences).get_data(as_text=True)
    response = client.post(
        f"{preferences}/address", data={"csrf_token": csrf_token_from(page), "new_email": new}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    deliver(runner)
    _, asked = mail_to(app, new, "Please confirm")
    assert "Your address is changed" in press(client, first_link(asked, "address"))


@pytest.fixture
def mailed(app: Flask, client: FlaskClient, runner: FlaskCliRunner) -> dict[str, str]:
    """A reader who got a welcome, a digest and an early-access alert, then changed address;
    the List-Unsubscribe path of each of those mails."""
    subscribe_and_confirm(app, client, runner, "old@example.org")
    with app.app_context():
        film = Film(
            slug="early-film",
            title="The Early Film",
            early_access_at=PAST,
            release_date=date(2099, 1, 1),
        )
        digest = Digest(subject="This week", status=DigestStatus.SCHEDULED, send_at=PAST)
        digest.films = [DigestFilm(film=film, position=0)]
        db.session.add_all([film, digest])
        db.session.commit()
    deliver(runner)
    links = {
        kind: mail_to(app, "old@example.org", subject)[0]
        for kind, subject in (
            ("welcome", "Welcome"),
            ("digest", "This week"),
            ("alert", "Early access"),
        )
    }
    assert all(path.startswith("/unsubscribe/") for path in links.values()), links
    _, welcome = mail_to(app, "old@example.org", "Welcome")
    change_address(app, client, runner, first_link(welcome, "preferences"), "new@example.org")
    return links


@pytest.mark.parametrize("kind", ["welcome", "digest", "alert"])
def test_one_click_from_a_mail_sent_before_an_address_change_unsubscribes(
    app: Flask, mailed: dict[str, str], kind: str
) -> None:
    provider = app.test_client(use_cookies=False)
    page = provider.get(mailed[kind])
    assert page.status_code == 200 and "Unsubscribe me" in page.get_data(as_text=True)
    for _ in range(2):  # a repeated POST is harmless
        response = provider.post(mailed[kind], data=ONE_CLICK)
        assert response.status_code == 200, response.get_data(as_text=True)
        assert "You are unsubscribed" in response.get_data(as_text=True)
    with app.app_context():
        reader = find_subscriber("new@example.org")
        assert reader is not None and reader.status == SubscriberStatus.UNSUBSCRIBED
        assert reader.consent_events[-1].form == "one-click"


def test_mail_sent_after_the_change_unsubscribes_too(
    app: Flask, runner: FlaskCliRunner, mailed: dict[str, str]
) -> None:
    with app.app_context():
        digest = Digest(subject="Next week", status=DigestStatus.SCHEDULED, send_at=PAST)
        db.session.add(digest)
        db.session.commit()
    deliver(runner)
    newest, _ = mail_to(app, "new@example.org", "Next week")
    provider = app.test_client(use_cookies=False)
    assert provider.post(newest, data=ONE_CLICK).status_code == 200
    assert provider.post(mailed["digest"], data=ONE_CLICK).status_code == 200
    with app.app_context():
        reader = find_subscriber("new@example.org")
        assert reader is not None and reader.status == SubscriberStatus.UNSUBSCRIBED
        # The second link found nothing left to do: one unsubscribe recorded.
        forms = db.session.scalars(
            select(ConsentEvent.form).where(ConsentEvent.action == "unsubscribe")
        ).all()
        assert forms == ["one-click"]


def test_a_link_from_before_a_comeback_unsubscribes_again(
    app: Flask, client: FlaskClient, runner: FlaskCliRunner, mailed: dict[str, str]
) -> None:
    provider = app.test_client(use_cookies=False)
    assert provider.post(mailed["digest"], data=ONE_CLICK).status_code == 200
    subscribe_and_confirm(app, client, runner, "new@example.org")
    assert find_status(app, "new@example.org") == SubscriberStatus.CONFIRMED
    assert provider.post(mailed["welcome"], data=ONE_CLICK).status_code == 200
    assert find_status(app, "new@example.org") == SubscriberStatus.UNSUBSCRIBED


def test_the_link_of_an_erased_subscriber_never_reaches_the_next_holder_of_its_id(
    app: Flask, mailed: dict[str, str]
) -> None:
    with app.app_context():
        reader = find_subscriber("new@example.org")
        assert reader is not None
        reader_id = reader.id
        erase(reader, PAST)
        db.session.commit()
    provider = app.test_client(use_cookies=False)
    # Nobody is left to stop: a success, with nothing done.
    gone = provider.post(mailed["digest"], data=ONE_CLICK)
    assert gone.status_code == 200 and "You are unsubscribed" in gone.get_data(as_text=True)
    with app.app_context():
        # SQLite hands a deleted highest id to the next row; force it on PostgreSQL too.
        taken_over = Subscriber(id=reader_id, email="next@example.org", nonce="next-nonce")
        taken_over.status = SubscriberStatus.CONFIRMED
        db.session.add(taken_over)
        db.session.commit()
    for path in mailed.values():
        assert provider.post(path, data=ONE_CLICK).status_code == 400
    assert find_status(app, "next@example.org") == SubscriberStatus.CONFIRMED


def find_status(app: Flask, email: str) -> str | None:
    with app.app_context():
        reader = find_subscriber(email)
        return None if reader is None else reader.status


def test_the_link_of_a_test_send_answers_without_acting(
    app: Flask, admin_client: FlaskClient, runner: FlaskCliRunner
) -> None:
    subscribe_and_confirm(app, app.test_client(), runner, "reader@example.org")
    with app.app_context():
        digest = Digest(subject="Draft issue")
        db.session.add(digest)
        db.session.commit()
        digest_id = digest.id
    page = admin_client.get(f"/admin/digests/{digest_id}").get_data(as_text=True)
    response = admin_client.post(
        f"/admin/digests/{digest_id}/test",
        data={"csrf_token": csrf_token_from(page), "to": "editor@example.org"},
    )
    assert response.status_code == 302
    deliver(runner)
    path, _ = mail_to(app, "editor@example.org", "[TEST] Draft issue")
    assert path.startswith("/unsubscribe/")
    provider = app.test_client(use_cookies=False)
    opened = provider.get(path)
    assert opened.status_code == 200
    assert "example" in opened.get_data(as_text=True) and "<form" not in opened.get_data(
        as_text=True
    )
    clicked = provider.post(path, data=ONE_CLICK)
    assert clicked.status_code == 200 and "Location" not in clicked.headers
    assert "nothing" in clicked.get_data(as_text=True).lower()
    with app.app_context():
        statuses = db.session.scalars(select(Subscriber.status)).all()
        assert statuses == [SubscriberStatus.CONFIRMED]
        unsubscribes = select(ConsentEvent).where(ConsentEvent.action == "unsubscribe")
        assert db.session.scalar(unsubscribes) is None
