"""Early-access alerts sent by real worker processes: once per subscriber, crash or not."""

from __future__ import annotations

import re
import signal
from datetime import datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import func, select

from mailer.extensions import db
from mailer.models import Delivery, DeliveryKind, DeliveryStatus, Film, SubscriberStatus, utcnow
from tests.factories import Workers, add_subscribers, by_recipient, emails_of, wait_until
from tests.smtp_server import ScriptedSMTPServer

TITLE = "The Unreleased"
SUBJECT = f"Early access: {TITLE}"
WATCH = "https://watch.example.org/the-unreleased"


def open_film(now: datetime) -> int:
    """A film whose early access opened a minute before ``now``, released ten days after."""
    film = Film(
        slug="the-unreleased",
        title=TITLE,
        early_access_at=now - timedelta(minutes=1),
        release_date=(now + timedelta(days=10)).date(),
        watch_url=WATCH,
    )
    db.session.add(film)
    db.session.commit()
    return film.id


def add_audience(eligible: int, now: datetime) -> set[str]:
    """``eligible`` subscribers to alert, and some who must not be; the eligible addresses."""
    everyone = emails_of(add_subscribers(eligible, now=now))
    add_subscribers(30, now=now, prefix="notopic", wants_early_access=False)
    pending = {"status": SubscriberStatus.PENDING, "confirmed_at": None}
    add_subscribers(20, now=now, prefix="pending", **pending)
    add_subscribers(10, now=now, prefix="gone", status=SubscriberStatus.UNSUBSCRIBED)
    return everyone


def alert_counts(film_id: int) -> dict[str, int]:
    """The film's alert rows by status, as committed now."""
    db.session.rollback()
    rows = db.session.execute(
        select(Delivery.status, func.count())
        .where(Delivery.kind == DeliveryKind.EARLY_ACCESS, Delivery.film_id == film_id)
        .group_by(Delivery.status)
    )
    return {str(status): count for status, count in rows}


def all_sent(film_id: int, total: int) -> bool:
    """Whether every alert of the film is sent."""
    return alert_counts(film_id) == {DeliveryStatus.SENT: total}


def test_worker_killed_mid_way_then_restarted_alerts_everyone_once(
    app: Flask, workers: Workers, smtp_server: ScriptedSMTPServer
) -> None:
    with app.app_context():
        film_id = open_film(utcnow())
        everyone = add_audience(1200, utcnow())
    first = workers.start("worker")
    smtp_server.wait_for(200, timeout=120)
    first.send_signal(signal.SIGKILL)
    first.wait()
    with app.app_context():
        counts = alert_counts(film_id)
        in_flight = counts.get(DeliveryStatus.CLAIMED, 0)
        assert sum(counts.values()) == 1200, "alerts are journalled all at once, one per reader"
        assert len(smtp_server.received) < 1200, "the worker finished before it was killed"
        workers.start("worker")
        wait_until(lambda: all_sent(film_id, 1200), 180, "every alert sent")
    seen = by_recipient(smtp_server.received, SUBJECT)
    assert set(seen) == everyone  # nobody without the topic, pending or unsubscribed
    duplicates = {rcpt: mids for rcpt, mids in seen.items() if len(mids) > 1}
    # A crash can resend only what was on the wire at that moment, under the same Message-ID.
    assert sum(len(mids) - 1 for mids in duplicates.values()) <= in_flight
    assert all(len(set(mids)) == 1 for mids in duplicates.values())


@pytest.mark.postgres_only
@pytest.mark.usefixtures("postgres_only")
def test_two_workers_alert_each_subscriber_exactly_once(
    app: Flask, workers: Workers, smtp_server: ScriptedSMTPServer
) -> None:
    with app.app_context():
        everyone = add_audience(500, utcnow())
        film_id = open_film(utcnow())
    # Both start together, so both try to queue the alerts and both send.
    for _ in range(2):
        workers.start("worker", MAILER_SMTP_CONNECTIONS="2")
    with app.app_context():
        wait_until(lambda: all_sent(film_id, 500), 120, "every alert sent")
    seen = by_recipient(smtp_server.received, SUBJECT)
    assert set(seen) == everyone
    assert all(len(mids) == 1 for mids in seen.values()), "someone got the alert twice"


def test_the_alert_link_opens_the_film_in_that_browser_only(
    app: Flask, workers: Workers, smtp_server: ScriptedSMTPServer
) -> None:
    with app.app_context():
        open_film(utcnow())
        add_audience(3, utcnow())
    workers.start("deliver")
    smtp_server.wait_for(3, timeout=60)
    message = smtp_server.received[0].message
    text = message.get_body(("plain",)).get_content()
    assert WATCH not in message.as_string()  # the mail carries the personal link, not the film
    match = re.search(r"https?://[^/\s]+(/early/[A-Za-z0-9_.\-]+)", text)
    assert match, text
    browser = app.test_client()
    assert browser.get(match.group(1)).status_code == 302
    assert WATCH in browser.get("/films/the-unreleased").get_data(as_text=True)
    assert WATCH not in app.test_client().get("/films/the-unreleased").get_data(as_text=True)
