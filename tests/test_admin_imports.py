"""Admin subscriber actions by hand (unsubscribe, erase) and the CSV import."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from mailer.extensions import db
from mailer.models import (
    ConsentAction,
    ConsentEvent,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Subscriber,
    SubscriberStatus,
    SuppressionReason,
)
from mailer.suppressions import suppress
from tests.conftest import ADMIN_EMAIL, admin_csrf, csrf_token_from


def _add(app: Flask, email: str, status: str = SubscriberStatus.CONFIRMED) -> int:
    with app.app_context():
        subscriber = Subscriber(email=email, status=status, nonce="n" * 16)
        db.session.add(subscriber)
        db.session.flush()
        db.session.add(
            Delivery(kind=DeliveryKind.WELCOME, subscriber_id=subscriber.id, to_address=email)
        )
        db.session.commit()
        return subscriber.id


def _count(app: Flask, model: type) -> int:
    with app.app_context():
        return int(db.session.scalar(select(func.count()).select_from(model)) or 0)


def test_unsubscribe_by_hand_asks_first_and_records_who(
    app: Flask, admin_client: FlaskClient
) -> None:
    sid = _add(app, "reader@example.org")
    detail = admin_client.get(f"/admin/subscribers/{sid}").get_data(as_text=True)
    assert f"/admin/subscribers/{sid}/unsubscribe" in detail
    page = admin_client.get(f"/admin/subscribers/{sid}/unsubscribe").get_data(as_text=True)
    assert "Unsubscribe reader@example.org?" in page
    token = csrf_token_from(page)
    # Without the confirmation field the page is shown again and nothing changes.
    again = admin_client.post(f"/admin/subscribers/{sid}/unsubscribe", data={"csrf_token": token})
    assert again.status_code == 200
    with app.app_context():
        assert db.session.get(Subscriber, sid).status == SubscriberStatus.CONFIRMED  # type: ignore[union-attr]
    done = admin_client.post(
        f"/admin/subscribers/{sid}/unsubscribe", data={"csrf_token": token, "confirm": "yes"}
    )
    assert done.status_code == 302
    with app.app_context():
        subscriber = db.session.get(Subscriber, sid)
        assert subscriber is not None and subscriber.status == SubscriberStatus.UNSUBSCRIBED
        event = db.session.scalar(select(ConsentEvent).where(ConsentEvent.subscriber_id == sid))
        assert event is not None and event.action == ConsentAction.UNSUBSCRIBE
        assert event.consent_text == f"Unsubscribed by the admin {ADMIN_EMAIL}"
        delivery = db.session.scalar(select(Delivery))
        assert delivery is not None and delivery.status == DeliveryStatus.SKIPPED
    detail = admin_client.get(f"/admin/subscribers/{sid}").get_data(as_text=True)
    assert (
        "status-unsubscribed" in detail
        and f'href="/admin/subscribers/{sid}/unsubscribe"' not in detail
    )


def test_erase_by_hand_deletes_and_suppresses(app: Flask, admin_client: FlaskClient) -> None:
    sid = _add(app, "gone@example.org")
    page = admin_client.get(f"/admin/subscribers/{sid}/erase").get_data(as_text=True)
    assert "cannot be undone" in page
    response = admin_client.post(
        f"/admin/subscribers/{sid}/erase",
        data={"csrf_token": csrf_token_from(page), "confirm": "yes"},
    )
    assert response.status_code == 302 and response.headers["Location"] == "/admin/subscribers"
    with app.app_context():
        assert db.session.get(Subscriber, sid) is None
        delivery = db.session.scalar(select(Delivery))
        assert delivery is not None and delivery.to_address is None
    assert admin_client.get(f"/admin/subscribers/{sid}/erase").status_code == 404


def test_actions_refuse_a_missing_csrf_token(app: Flask, admin_client: FlaskClient) -> None:
    sid = _add(app, "kept@example.org")
    for action in ("unsubscribe", "erase"):
        response = admin_client.post(f"/admin/subscribers/{sid}/{action}", data={"confirm": "yes"})
        assert response.status_code == 400
    with app.app_context():
        assert db.session.get(Subscriber, sid) is not None


# --- CSV import ---------------------------------------------------------------------------------


def _upload(client: FlaskClient, content: bytes, name: str = "list.csv"):
    token = admin_csrf(client)
    return client.post(
        "/admin/subscribers/import",
        data={"csrf_token": token, "file": (io.BytesIO(content), name)},
        content_type="multipart/form-data",
    )


def _mapping(html: str) -> dict[str, str]:
    """The hidden fields and pre-selected columns of the mapping form."""
    fields = {
        name: value
        for name, value in re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', html)
    }
    for select_name in ("email_column", "topics_column"):
        chosen = re.search(rf'name="{select_name}".*?<option value="(\d*)" selected', html, re.S)
        fields[select_name] = chosen.group(1) if chosen else ""
    return fields


def _run(client: FlaskClient, fields: dict[str, str], **extra):
    data = {**fields, **extra, "default_topics": ["digest", "early_access"]}
    return client.post("/admin/subscribers/import/run", data=data)


def test_import_maps_columns_sends_confirmations_and_reports(
    app: Flask, admin_client: FlaskClient
) -> None:
    _add(app, "already@example.org")
    with app.app_context():
        suppress("bounced@example.org", SuppressionReason.HARD_BOUNCE, datetime.now(UTC))
        db.session.commit()
    content = (
        "\ufeffName,E-mail address,Lists\r\n"
        "Ann,Ann@Example.org,digest\r\n"
        "Bob,bob@example.org,\r\n"
        "Cat,bounced@example.org,digest\r\n"
        "Dup,ann@example.org,early_access\r\n"
        "Old,already@example.org,digest\r\n"
    ).encode()
    page = _upload(admin_client, content)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "5 rows after the header" in html and "<td>Ann@Example.org</td>" in html
    fields = _mapping(html)
    assert (fields["email_column"], fields["topics_column"]) == ("1", "2")  # guessed
    done = _run(admin_client, fields)
    assert done.status_code == 200
    report = done.get_data(as_text=True)
    assert '<dd id="added-pending">2</dd>' in report
    assert '<dd id="already-listed">1</dd>' in report
    assert '<dd id="suppressed">1</dd>' in report and "Row 4: bounced@example.org" in report
    assert '<dd id="repeated">1</dd>' in report
    with app.app_context():
        ann = db.session.scalar(select(Subscriber).where(Subscriber.email == "ann@example.org"))
        bob = db.session.scalar(select(Subscriber).where(Subscriber.email == "bob@example.org"))
        assert ann is not None and bob is not None
        assert ann.status == SubscriberStatus.PENDING
        assert (ann.wants_digest, ann.wants_early_access) == (True, False)
        assert (bob.wants_digest, bob.wants_early_access) == (True, True)  # default topics
        assert ann.source == "import"
        event = db.session.scalar(select(ConsentEvent).where(ConsentEvent.subscriber_id == ann.id))
        assert event is not None and event.action == ConsentAction.IMPORT
        assert "list.csv" in event.consent_text and "confirmation" in event.consent_text
        kinds = db.session.scalars(
            select(Delivery.kind).where(Delivery.subscriber_id.in_([ann.id, bob.id]))
        ).all()
        assert sorted(kinds) == [DeliveryKind.CONFIRMATION, DeliveryKind.CONFIRMATION]
        assert (
            db.session.scalar(select(Subscriber).where(Subscriber.email == "bounced@example.org"))
            is None
        )


def test_import_as_confirmed_needs_the_opt_in_tick(app: Flask, admin_client: FlaskClient) -> None:
    fields = _mapping(_upload(admin_client, b"email\nzoe@example.org\n").get_data(as_text=True))
    done = _run(admin_client, fields, opted_in="1", origin="signed up at the Sheffield festival")
    assert '<dd id="added-confirmed">1</dd>' in done.get_data(as_text=True)
    with app.app_context():
        zoe = db.session.scalar(select(Subscriber))
        assert zoe is not None and zoe.status == SubscriberStatus.CONFIRMED
        event = db.session.scalar(select(ConsentEvent))
        assert event is not None
        assert (
            "already opted in elsewhere (signed up at the Sheffield festival)" in event.consent_text
        )
        assert db.session.scalar(select(Delivery)) is None  # no confirmation mail


def test_a_bad_file_is_reported_row_by_row_and_nothing_is_written(
    app: Flask, admin_client: FlaskClient
) -> None:
    content = (
        b"email,topics\n"
        b"good@example.org,digest\n"
        b"not-an-address,digest\n"
        b'"evil@example.org\r\nBcc: x@example.org",digest\n'
        b"fine@example.org,newsletter\n"
        b"<script>alert(1)</script>,digest\n"
    )
    fields = _mapping(_upload(admin_client, content).get_data(as_text=True))
    response = _run(admin_client, fields)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "Nothing was imported" in html
    for line in (3, 4, 5, 6):
        assert f"Row {line}:" in html
    assert "Unknown topic" in html and "line breaks" in html
    assert "Row 2:" not in html
    assert "<script>alert" not in html
    assert _count(app, Subscriber) == 0 and _count(app, ConsentEvent) == 0
    assert _count(app, Delivery) == 0


def test_import_needs_some_topic_for_each_row(app: Flask, admin_client: FlaskClient) -> None:
    fields = _mapping(_upload(admin_client, b"email\nann@example.org\n").get_data(as_text=True))
    response = admin_client.post("/admin/subscribers/import/run", data=fields)  # nothing ticked
    assert response.status_code == 400
    assert "no topics" in response.get_data(as_text=True)
    assert _count(app, Subscriber) == 0


def test_unreadable_uploads_are_refused_clearly(app: Flask, admin_client: FlaskClient) -> None:
    cases = [
        (b"", "The file is empty."),
        (b"email\n", "at least one address"),
        (b"email\n\xff\xfe\x00bad\n", "not UTF-8"),
    ]
    for content, message in cases:
        response = _upload(admin_client, content)
        assert response.status_code == 400, content
        assert message in response.get_data(as_text=True), content
    missing = admin_client.post(
        "/admin/subscribers/import", data={"csrf_token": admin_csrf(admin_client)}
    )
    assert missing.status_code == 400
    damaged = admin_client.post(
        "/admin/subscribers/import/run",
        data={"csrf_token": admin_csrf(admin_client), "packed": "***", "email_column": "0"},
    )
    assert damaged.status_code == 400 and "damaged" in damaged.get_data(as_text=True)
    unmapped = _mapping(_upload(admin_client, b"a,b\nx@example.org,y\n").get_data(as_text=True))
    unmapped["email_column"] = ""
    response = _run(admin_client, unmapped)
    assert response.status_code == 400
    assert "choose the column that holds the addresses" in response.get_data(as_text=True)
    assert _count(app, Subscriber) == 0


def test_semicolon_files_and_suppressed_erased_addresses(
    app: Flask, admin_client: FlaskClient
) -> None:
    with app.app_context():
        suppress("erased@example.org", SuppressionReason.ERASED, datetime.now(UTC))
        db.session.commit()
    content = b"Email;Topics\nerased@example.org;digest\nnew@example.org;digest|early-access\n"
    fields = _mapping(_upload(admin_client, content).get_data(as_text=True))
    report = _run(admin_client, fields).get_data(as_text=True)
    assert '<dd id="suppressed">1</dd>' in report and '<dd id="added-pending">1</dd>' in report
    with app.app_context():
        emails = db.session.scalars(select(Subscriber.email)).all()
        assert emails == ["new@example.org"]
        new = db.session.scalar(select(Subscriber))
        assert new is not None and new.wants_early_access
