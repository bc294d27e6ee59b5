"""Admin subscribers: search, filters, keyset pages, detail, CSV export, suppression list."""

from __future__ import annotations

import csv
import hashlib
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select

from mailer.admin.subscribers import csv_cell
from mailer.extensions import db
from mailer.models import (
    ConsentEvent,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Subscriber,
    SubscriberStatus,
    Suppression,
)
from mailer.subscriber_search import SubscriberFilter, subscriber_page
from tests.conftest import admin_csrf

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _add(app, email: str, status: str = SubscriberStatus.CONFIRMED, **extra) -> int:
    with app.app_context():
        subscriber = Subscriber(email=email, status=status, nonce="n" * 16, **extra)
        db.session.add(subscriber)
        db.session.commit()
        return subscriber.id


def _add_many(app, count: int) -> list[int]:
    with app.app_context():
        rows = [
            Subscriber(
                email=f"user{n:04d}@example.org",
                status=SubscriberStatus.CONFIRMED if n % 3 else SubscriberStatus.PENDING,
                wants_digest=n % 2 == 0,
                nonce="n" * 16,
                created_at=T0 + timedelta(minutes=n),
            )
            for n in range(count)
        ]
        db.session.add_all(rows)
        db.session.commit()
        return [s.id for s in rows]


def _emails(html: str) -> list[str]:
    return re.findall(r'/admin/subscribers/\d+">([^<]+)</a>', html)


def test_keyset_pages_walk_every_row_once_newest_first(app) -> None:
    ids = _add_many(app, 23)
    with app.app_context():
        seen, after, pages = [], None, 0
        while True:
            rows, after = subscriber_page(SubscriberFilter(), after, size=5)
            seen += [s.id for s in rows]
            pages += 1
            if after is None:
                break
        assert seen == sorted(ids, reverse=True)
        assert pages == 5
        # A page that ends exactly at the last row has no next page.
        rows, after = subscriber_page(SubscriberFilter(), None, size=23)
        assert len(rows) == 23 and after is None


def test_keyset_pages_respect_filters(app) -> None:
    _add_many(app, 30)
    flt = SubscriberFilter(status=SubscriberStatus.CONFIRMED, topic="digest")
    with app.app_context():
        expected = db.session.scalars(
            select(Subscriber.id)
            .where(Subscriber.status == "confirmed", Subscriber.wants_digest.is_(True))
            .order_by(Subscriber.id.desc())
        ).all()
        seen, after = [], None
        while True:
            rows, after = subscriber_page(flt, after, size=4)
            seen += [s.id for s in rows]
            if after is None:
                break
        assert seen == expected and len(expected) == 10


def test_a_page_runs_one_query_without_offset_or_count(app) -> None:
    _add_many(app, 12)
    statements: list[tuple[str, object]] = []
    with app.app_context():
        engine = db.engine

        def record(conn, cursor, statement, parameters, *args) -> None:
            statements.append((statement, parameters))

        event.listen(engine, "before_cursor_execute", record)
        try:
            subscriber_page(SubscriberFilter(query="user"), 10, size=5)
        finally:
            event.remove(engine, "before_cursor_execute", record)
    assert len(statements) == 1
    sql, parameters = statements[0][0].upper(), statements[0][1]
    if "LIMIT ? OFFSET ?" in sql:  # SQLite's dialect always writes an OFFSET; it must be 0
        assert parameters[-1] == 0
        sql = sql.replace("LIMIT ? OFFSET ?", "LIMIT ?")
    assert "OFFSET" not in sql and "COUNT(" not in sql
    assert "LIMIT" in sql and "ORDER BY SUBSCRIBERS.ID DESC" in sql


def test_list_search_by_prefix_and_exact_address(app, admin_client) -> None:
    _add(app, "alice@example.org")
    _add(app, "alison@example.net")
    _add(app, "bob@example.org")
    _add(app, "a_b%c@example.org")
    html = admin_client.get("/admin/subscribers").get_data(as_text=True)
    assert len(_emails(html)) == 4
    assert sorted(_emails(admin_client.get("/admin/subscribers?q=ali").get_data(as_text=True))) == [
        "alice@example.org",
        "alison@example.net",
    ]
    exact = admin_client.get("/admin/subscribers?q=Alice@Example.org").get_data(as_text=True)
    assert _emails(exact) == ["alice@example.org"]
    # LIKE wildcards in the search are taken literally.
    assert _emails(admin_client.get("/admin/subscribers?q=a_").get_data(as_text=True)) == [
        "a_b%c@example.org"
    ]
    assert _emails(admin_client.get("/admin/subscribers?q=%25").get_data(as_text=True)) == []


def test_list_filters_by_status_and_topic(app, admin_client) -> None:
    _add(app, "p@example.org", SubscriberStatus.PENDING)
    _add(app, "c@example.org", SubscriberStatus.CONFIRMED, wants_digest=False)
    _add(app, "u@example.org", SubscriberStatus.UNSUBSCRIBED)
    get = admin_client.get
    assert _emails(get("/admin/subscribers?status=pending").get_data(as_text=True)) == [
        "p@example.org"
    ]
    assert "c@example.org" not in get("/admin/subscribers?topic=digest").get_data(as_text=True)
    early = _emails(get("/admin/subscribers?topic=early_access").get_data(as_text=True))
    assert len(early) == 3
    # Unknown filter values are ignored rather than failing.
    assert len(_emails(get("/admin/subscribers?status=nope&topic=x").get_data(as_text=True))) == 3


def test_list_links_to_older_pages(app, admin_client) -> None:
    _add_many(app, 55)
    first = admin_client.get("/admin/subscribers?status=confirmed").get_data(as_text=True)
    assert len(_emails(first)) == 36  # fewer than a page: no link
    assert 'rel="next"' not in first
    page1 = admin_client.get("/admin/subscribers").get_data(as_text=True)
    assert len(_emails(page1)) == 50
    link = re.search(r'rel="next" href="([^"]+)"', page1).group(1).replace("&amp;", "&")
    page2 = admin_client.get(link).get_data(as_text=True)
    assert _emails(page2) == [f"user{n:04d}@example.org" for n in range(4, -1, -1)]
    assert set(_emails(page1)).isdisjoint(_emails(page2))


def test_detail_shows_consent_history_and_deliveries(app, admin_client) -> None:
    sid = _add(app, "carol@example.org", confirmed_at=T0)
    with app.app_context():
        db.session.add_all(
            [
                ConsentEvent(
                    subscriber_id=sid,
                    action="subscribe",
                    at=T0,
                    ip="203.0.113.9",
                    form="landing",
                    consent_text="<b>Yes</b> send me films",
                ),
                Delivery(
                    kind=DeliveryKind.CONFIRMATION,
                    subscriber_id=sid,
                    status=DeliveryStatus.FAILED,
                    last_error="550 5.1.1 <script>no</script>",
                ),
            ]
        )
        db.session.commit()
    html = admin_client.get(f"/admin/subscribers/{sid}").get_data(as_text=True)
    assert "<h1>carol@example.org</h1>" in html
    assert "203.0.113.9" in html and "&lt;b&gt;Yes&lt;/b&gt; send me films" in html
    assert "confirmation" in html and "550 5.1.1 &lt;script&gt;" in html
    assert admin_client.get("/admin/subscribers/999999").status_code == 404


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1", "'+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("plain", "plain"),
        (None, ""),
        (True, "True"),
    ],
)
def test_csv_cells_are_safe_from_formula_injection(value, cell) -> None:
    assert csv_cell(value) == cell


def test_csv_export_streams_the_filtered_subscribers(app, admin_client) -> None:
    _add(app, "=cmd|'/c calc'!a0@example.org", source="=1+1")
    _add(app, "dave@example.org", SubscriberStatus.PENDING, source="web")
    response = admin_client.get("/admin/subscribers/export.csv")
    assert response.status_code == 200
    assert response.is_streamed
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [r["email"] for r in rows] == ["dave@example.org", "'=cmd|'/c calc'!a0@example.org"]
    assert rows[1]["source"] == "'=1+1"
    pending = admin_client.get("/admin/subscribers/export.csv?status=pending")
    assert [r["email"] for r in csv.DictReader(io.StringIO(pending.get_data(as_text=True)))] == [
        "dave@example.org"
    ]


def test_csv_export_walks_past_one_batch(app, admin_client, monkeypatch) -> None:
    monkeypatch.setattr("mailer.admin.subscribers.EXPORT_BATCH", 7)
    ids = _add_many(app, 20)
    body = admin_client.get("/admin/subscribers/export.csv").get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [int(r["id"]) for r in rows] == sorted(ids, reverse=True)


def test_suppress_an_address_and_remove_it_with_reasons(app, admin_client, caplog) -> None:
    sid = _add(app, "eve@example.org")
    with app.app_context():
        db.session.add(Delivery(kind=DeliveryKind.WELCOME, subscriber_id=sid))
        db.session.commit()
    data = {
        "csrf_token": admin_csrf(admin_client),
        "email": " Eve@Example.org ",
        "reason": "complaint",
        "note": "asked by phone",
    }
    assert admin_client.post("/admin/suppressions", data=data).status_code == 302
    with app.app_context():
        entry = db.session.scalar(select(Suppression))
        assert entry.email == "eve@example.org"
        assert entry.email_hash == hashlib.sha256(b"eve@example.org").hexdigest()
        assert (entry.reason, entry.note) == ("complaint", "asked by phone")
        queued = db.session.scalar(select(Delivery))
        assert queued.status == DeliveryStatus.SKIPPED
        entry_id = entry.id
    html = admin_client.get("/admin/suppressions").get_data(as_text=True)
    assert "eve@example.org" in html and "asked by phone" in html
    assert "suppressed (complaint)" in admin_client.get(f"/admin/subscribers/{sid}").get_data(
        as_text=True
    )

    again = admin_client.post("/admin/suppressions", data=data)
    assert again.status_code == 400 and "is already suppressed" in again.get_data(as_text=True)

    no_reason = admin_client.post(
        f"/admin/suppressions/{entry_id}/delete",
        data={"csrf_token": admin_csrf(admin_client), "why": "  "},
    )
    assert no_reason.status_code == 400
    assert "say why the address may be mailed again" in no_reason.get_data(as_text=True)
    with caplog.at_level("INFO", logger="mailer.suppressions"):
        removed = admin_client.post(
            f"/admin/suppressions/{entry_id}/delete",
            data={"csrf_token": admin_csrf(admin_client), "why": "added by mistake"},
        )
    assert removed.status_code == 302
    assert "added by mistake" in caplog.text and "editor@example.org" in caplog.text
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Suppression)) == 0
    gone = admin_client.post(
        f"/admin/suppressions/{entry_id}/delete",
        data={"csrf_token": admin_csrf(admin_client), "why": "x"},
    )
    assert gone.status_code == 404


def test_suppression_form_refuses_bad_input(app, admin_client) -> None:
    data = {
        "csrf_token": admin_csrf(admin_client),
        "email": "<script>@x",
        "reason": "because",
        "note": "",
    }
    response = admin_client.post("/admin/suppressions", data=data)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert 'id="e-email"' in html and "Reason must be one of" in html
    assert "<script>@x" not in html
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Suppression)) == 0


def test_erased_suppressions_show_only_that_they_are_hashed(app, admin_client) -> None:
    with app.app_context():
        db.session.add(Suppression(email_hash="a" * 64, email=None, reason="erased"))
        db.session.commit()
    assert "(erased; hash only)" in admin_client.get("/admin/suppressions").get_data(as_text=True)
