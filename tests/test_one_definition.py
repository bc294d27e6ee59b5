"""Eligibility and Message-IDs are defined once: the SQL and the Python forms agree."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from flask import Flask
from sqlalchemy import select

from mailer.extensions import db
from mailer.journal import enqueue_for, may_receive, message_id, queue_message, refusal
from mailer.models import (
    Delivery,
    DeliveryKind,
    DigestFilm,
    Subscriber,
    SubscriberStatus,
    SuppressionReason,
)
from mailer.sending import claim_batch
from mailer.suppressions import suppress
from tests.factories import add_digest, add_subscribers

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MESSAGE_ID = re.compile(r"<\d+\.\d+\.\d+\.d(\d+)@([^>]+)>")


def test_enqueue_and_the_re_check_agree_on_who_is_eligible(app: Flask) -> None:
    with app.app_context():
        ids = add_subscribers(6, now=NOW)
        people = {i: db.session.get(Subscriber, i) for i in ids}
        people[ids[0]].status = SubscriberStatus.UNSUBSCRIBED  # type: ignore[union-attr]
        people[ids[1]].wants_digest = False  # type: ignore[union-attr]
        people[ids[2]].wants_early_access = False  # type: ignore[union-attr]
        suppress(people[ids[3]].email, SuppressionReason.MANUAL, NOW)  # type: ignore[union-attr]
        db.session.commit()
        digest_id = add_digest("Eligibility", now=NOW)
        film_id = db.session.scalar(
            select(DigestFilm.film_id).where(DigestFilm.digest_id == digest_id)
        )
        enqueue_for(DeliveryKind.DIGEST, NOW, digest_id=digest_id)
        enqueue_for(DeliveryKind.EARLY_ACCESS, NOW, film_id=film_id)
        queued = {
            (kind, subscriber_id)
            for kind, subscriber_id in db.session.execute(
                select(Delivery.kind, Delivery.subscriber_id)
            )
        }
        for kind in (DeliveryKind.DIGEST, DeliveryKind.EARLY_ACCESS):
            by_python = {i for i, s in people.items() if i != ids[3] and may_receive(kind, s)}
            assert {i for k, i in queued if k == kind} == by_python
        assert refusal(DeliveryKind.DIGEST, people[ids[0]]) == "subscriber unsubscribed"
        assert refusal(DeliveryKind.DIGEST, people[ids[1]]) == "digests turned off"


def test_the_claim_and_the_python_maker_make_message_ids_of_one_form(app: Flask) -> None:
    made = MESSAGE_ID.fullmatch(message_id(42, "example.org"))
    assert made is not None and made.groups() == ("42", "example.org")
    with app.app_context():
        delivery = queue_message(DeliveryKind.TEST, None, NOW, to_address="a@example.org")
        db.session.commit()
        assert claim_batch("w", NOW, 10, 60) == [delivery.id]
        claimed = db.session.scalar(select(Delivery.message_id).where(Delivery.id == delivery.id))
        found = MESSAGE_ID.fullmatch(claimed or "")
        assert found is not None and found.group(1) == str(delivery.id)
