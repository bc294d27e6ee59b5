"""Rows the browser tests start from, made in-process on the served stack's database.

Each helper commits, so the served processes see the rows at once, and returns plain values
(ids, absolute URLs) that outlive the app context.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from .stack import LiveStack


@dataclass(frozen=True)
class SeededSubscriber:
    """A subscriber made for a test, with the personal links its mail would carry."""

    id: int
    email: str
    confirm_url: str
    preferences_url: str
    unsubscribe_url: str


def subscriber(stack: LiveStack, email: str, *, confirmed: bool = True) -> SeededSubscriber:
    """Subscribe ``email`` (to both topics) and confirm it unless ``confirmed`` is False."""
    from mailer.extensions import db
    from mailer.models import utcnow
    from mailer.subscribers import ConsentContext, confirm, find_subscriber, subscribe
    from mailer.tokens import Purpose, link

    with stack.app_context():
        now = utcnow()
        subscribe(email, ["digest", "early_access"], ConsentContext(form="browser tests"), now)
        row = find_subscriber(email)
        assert row is not None, f"{email} was not subscribed (suppressed?)"
        if confirmed:
            confirm(row, ConsentContext(form="browser tests"), now)
        db.session.commit()
        return SeededSubscriber(
            id=row.id,
            email=row.email,
            confirm_url=link(Purpose.CONFIRM, row),
            preferences_url=link(Purpose.PREFERENCES, row),
            unsubscribe_url=link(Purpose.UNSUBSCRIBE, row),
        )


def digest(stack: LiveStack, subject: str, intro_markdown: str, film_slugs: list[str]) -> int:
    """A draft digest featuring ``film_slugs`` in that order; its id."""
    from mailer.digests import create_digest
    from mailer.extensions import db
    from mailer.models import Film, utcnow

    with stack.app_context():
        ids = {f.slug: f.id for f in db.session.scalars(select(Film))}
        made = create_digest(
            subject, "", intro_markdown, [(ids[slug], "") for slug in film_slugs], utcnow()
        )
        db.session.commit()
        return made.id


def film_id(stack: LiveStack, slug: str) -> int:
    """The id of the film with ``slug``."""
    from mailer.extensions import db
    from mailer.models import Film

    with stack.app_context():
        found = db.session.scalar(select(Film.id).where(Film.slug == slug))
        assert found is not None, f"no film {slug!r}"
        return found


def suppression(stack: LiveStack, email: str, note: str) -> None:
    """Put ``email`` on the suppression list, as a bounce would."""
    from mailer.extensions import db
    from mailer.models import SuppressionReason, utcnow
    from mailer.subscribers import suppress

    with stack.app_context():
        suppress(email, SuppressionReason.MANUAL, note, utcnow())
        db.session.commit()
