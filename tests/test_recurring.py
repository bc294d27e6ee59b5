"""Recurring digests: each period composed once, with what is new, even with several workers."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, date, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import func, select

from mailer.config import recurring_trigger
from mailer.digests import compose_recurring_digest
from mailer.extensions import db
from mailer.models import Digest, DigestFilm, DigestStatus, Film, utcnow
from mailer.scheduler import latest_slot
from tests.factories import Workers, wait_until
from tests.smtp_server import ScriptedSMTPServer

SLOT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def add_film(slug: str, created_at: datetime, release_date: date | None = None) -> Film:
    film = Film(slug=slug, title=slug.title(), created_at=created_at, release_date=release_date)
    db.session.add(film)
    db.session.commit()
    return film


def test_latest_slot_follows_the_cron_schedule_in_its_time_zone() -> None:
    trigger = recurring_trigger("0 9 * * MON", "Europe/London")
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # a Wednesday
    assert latest_slot(trigger, now, 3600) is None  # Monday's run is outside the grace time
    assert latest_slot(trigger, now, 3 * 86400) == SLOT
    every_two_seconds = recurring_trigger("*/2 * * * * *", "UTC")
    assert latest_slot(every_two_seconds, SLOT + timedelta(seconds=3), 10) == SLOT + timedelta(
        seconds=2
    )


def test_a_period_is_composed_once_with_only_new_films(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mailer.digests")
    with app.app_context():
        old = add_film("old-one", SLOT - timedelta(days=20))
        first = compose_recurring_digest(SLOT - timedelta(days=7), SLOT - timedelta(days=7))
        assert first is not None
        assert [f.film_id for f in first.films] == [old.id]
        assert first.status == DigestStatus.SCHEDULED
        new = add_film("new-one", SLOT - timedelta(days=2))
        released = add_film("released", SLOT - timedelta(days=30), date(2026, 11, 20))
        digest = compose_recurring_digest(SLOT, SLOT + timedelta(seconds=5))
        assert digest is not None
        assert digest.period_key == "2026-11-23T09:00:00+00:00"
        assert {f.film_id for f in digest.films} == {new.id, released.id}
        assert compose_recurring_digest(SLOT, SLOT + timedelta(seconds=9)) is None
        assert "already composed" in caplog.text
        assert compose_recurring_digest(SLOT + timedelta(days=7), SLOT + timedelta(days=7)) is None
        assert "nothing new" in caplog.text
        assert db.session.scalar(select(func.count()).select_from(Digest)) == 2


def test_two_workers_composing_the_same_slot_at_once_make_one_digest(app: Flask) -> None:
    with app.app_context():
        add_film("fresh", SLOT - timedelta(days=1))
    results: list[Digest | None] = []
    barrier = threading.Barrier(2)

    def compose() -> None:
        with app.app_context():
            barrier.wait()
            digest = compose_recurring_digest(SLOT, SLOT)
            results.append(digest)
            db.session.remove()

    threads = [threading.Thread(target=compose) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(1 for r in results if r is not None) == 1
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Digest)) == 1


def test_two_worker_processes_firing_the_same_slot_compose_one_digest(
    app: Flask, test_env: dict[str, str], smtp_server: ScriptedSMTPServer, tmp_path
) -> None:
    with app.app_context():
        films = [add_film(f"film-{i}", utcnow() - timedelta(hours=i)) for i in range(3)]
        film_ids = {film.id for film in films}
    env = {**test_env, "MAILER_MAIL_URL": smtp_server.url}
    workers = Workers(env, tmp_path)
    try:
        # Both workers fire every two seconds, on the same slots.
        procs = [workers.start("worker", MAILER_DIGEST_SCHEDULE="*/2 * * * * *") for _ in range(2)]
        with app.app_context():

            def composed() -> bool:
                db.session.rollback()
                return bool(db.session.scalar(select(func.count()).select_from(Digest)))

            wait_until(composed, 60, "a recurring digest")
            # Let several more slots pass: nothing new, so nothing more is composed.
            wait_until(lambda: "nothing new" in "".join(workers.log(p) for p in procs), 60, "skips")
            digests = db.session.scalars(select(Digest)).all()
            featured = set(db.session.scalars(select(DigestFilm.film_id)))
    finally:
        workers.stop_all()
    assert len(digests) == 1
    assert digests[0].period_key is not None
    assert featured == film_ids
