"""Rows the browser tests start from, made in-process on the served stack's database.

Each helper commits, so the served processes see the rows at once, and returns plain values
(ids, absolute URLs) that outlive the app context.
"""

from __future__ import annotations

import time
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
    from mailer.suppressions import suppress

    with stack.app_context():
        suppress(email, SuppressionReason.MANUAL, utcnow(), note=note)
        db.session.commit()


def schedule_now(stack: LiveStack, digest_id: int) -> None:
    """Schedule the digest to send now, as the admin's "Send now" does; the worker takes it."""
    from mailer.digests import schedule_digest
    from mailer.extensions import db
    from mailer.models import Digest, utcnow

    with stack.app_context():
        found = db.session.get(Digest, digest_id)
        assert found is not None
        schedule_digest(found, None, utcnow())
        db.session.commit()


def digest_status(stack: LiveStack, digest_id: int) -> str:
    """The digest's status as stored."""
    from mailer.extensions import db
    from mailer.models import Digest

    with stack.app_context():
        found = db.session.get(Digest, digest_id)
        assert found is not None
        return str(found.status)


def wait_for_status(stack: LiveStack, digest_id: int, wanted: str, timeout: float = 90.0) -> None:
    """Wait until the worker moved the digest to ``wanted``; fail with the worker's log if not."""
    deadline = time.monotonic() + timeout
    while (status := digest_status(stack, digest_id)) != wanted:
        assert time.monotonic() < deadline, f"digest is {status}:\n{stack.log('worker')}"
        time.sleep(0.5)


def admin(stack: LiveStack, email: str, password: str) -> None:
    """Make sure an admin account exists (made with `mailer create-admin` the first time)."""
    from mailer.extensions import db
    from mailer.models import Admin

    with stack.app_context():
        exists = db.session.scalar(select(Admin.id).where(Admin.email == email)) is not None
    if not exists:
        stack.create_admin(email, password)


def embed_form(stack: LiveStack, name: str, origin: str) -> int:
    """An embeddable subscribe form allowed on ``origin``; its id."""
    from mailer.embed_forms import create_embed_form
    from mailer.extensions import db
    from mailer.models import utcnow

    with stack.app_context():
        form = create_embed_form(
            name, [origin], ["digest", "early_access"], "Yes, e-mail me.", utcnow()
        )
        db.session.commit()
        return form.id


def api_token(stack: LiveStack, name: str) -> None:
    """An API token called ``name`` (its value is not kept: only the admin page lists it)."""
    from mailer.api_tokens import create_api_token
    from mailer.extensions import db
    from mailer.models import utcnow

    with stack.app_context():
        create_api_token(name, utcnow())
        db.session.commit()


def sent_digest(stack: LiveStack, subject: str, intro_markdown: str, film_slugs: list[str]) -> int:
    """A digest the worker has sent to every confirmed subscriber; its id."""
    digest_id = digest(stack, subject, intro_markdown, film_slugs)
    schedule_now(stack, digest_id)
    wait_for_status(stack, digest_id, "sent")
    return digest_id
