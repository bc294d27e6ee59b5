"""What a batch of sends shares, and every query rendering makes: each row loaded once."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import select

from ..config import MailSettings, mail_settings
from ..extensions import db
from ..films import in_early_access
from ..models import Digest, DigestFilm, Film
from .deliveries import Journaled, Undeliverable

if TYPE_CHECKING:
    from .prerender import Prerendered

Row = TypeVar("Row", Digest, Film)


@dataclass(frozen=True)
class Lineup:
    """A digest's films in order, as far as choosing a variant goes: ids and dates."""

    film_ids: tuple[int, ...]
    release_dates: tuple[date | None, ...]
    early_access_ats: tuple[datetime | None, ...]

    def states(self, now: datetime) -> str:
        """One letter per film: public, in early access, or coming soon (as films.py decides)."""
        today = now.astimezone(UTC).date()
        return "".join(
            "p"
            if released is None or released <= today
            else "e"
            if early is not None and early <= now
            else "s"
            for released, early in zip(self.release_dates, self.early_access_ats, strict=True)
        )


@dataclass
class RenderCache:
    """What a batch of sends can share: the settings, rows loaded and messages pre-rendered once.

    A sender keeps one for its life, so the settings are read once per sender.
    """

    settings: MailSettings = field(default_factory=mail_settings)
    digests: dict[int, Digest] = field(default_factory=dict)
    films: dict[int, Film] = field(default_factory=dict)
    prerendered: dict[tuple[str, int, str], Prerendered] = field(default_factory=dict)
    slot_nonce: str = field(default_factory=lambda: secrets.token_hex(6))
    # Per digest: its films' ids and dates, which choose the variant each reader gets.
    lineups: dict[int, Lineup] = field(default_factory=dict)
    # How many bulk messages were assembled from pre-rendered bytes, and how many the slow way.
    fast_renders: int = 0
    slow_renders: int = 0

    # The Date header of the last time asked for: a group's messages share one.
    _date: tuple[datetime, str] | None = None

    def new_transaction(self) -> None:
        """Forget what may have changed since the last transaction: the films' dates."""
        self.lineups.clear()

    def date_header(self, now: datetime) -> str:
        """``now`` as a Date header, formatted once per distinct time."""
        if self._date is None or self._date[0] != now:
            self._date = (now, format_datetime(now))
        return self._date[1]

    def digest_of(self, delivery: Journaled) -> Digest:
        """The delivery's digest, loaded once per batch."""
        return _loaded(Digest, delivery.digest_id, self.digests, delivery)

    def film_of(self, delivery: Journaled) -> Film:
        """The delivery's film, loaded once per batch."""
        return _loaded(Film, delivery.film_id, self.films, delivery)

    def lineup_of(self, digest_id: int) -> Lineup:
        """The digest's films' ids and dates, read in one query once per transaction."""
        lineup = self.lineups.get(digest_id)
        if lineup is None:
            rows = db.session.execute(
                select(DigestFilm.film_id, Film.release_date, Film.early_access_at)
                .join(Film, Film.id == DigestFilm.film_id)
                .where(DigestFilm.digest_id == digest_id)
                .order_by(DigestFilm.position)
            ).all()
            lineup = Lineup(
                tuple(r.film_id for r in rows),
                tuple(r.release_date for r in rows),
                tuple(r.early_access_at for r in rows),
            )
            self.lineups[digest_id] = lineup
        return lineup


def _loaded(model: type[Row], row_id: int | None, loaded: dict[int, Row], by: Journaled) -> Row:
    """The row a delivery names, from ``loaded`` or else the database (then kept there)."""
    name = model.__name__.lower()
    if row_id is None:
        raise Undeliverable(f"delivery {by.id} names no {name}")
    row = loaded.get(row_id)
    if row is None:
        row = db.session.get(model, row_id)
        if row is None:
            raise Undeliverable(f"delivery {by.id}: {name} {row_id} is gone")
        loaded[row_id] = row
    return row


def digest_films(digest: Digest) -> list[DigestFilm]:
    """The digest's films in order, with their notes."""
    query = (
        select(DigestFilm)
        .where(DigestFilm.digest_id == digest.id)
        .order_by(DigestFilm.position, DigestFilm.film_id)
    )
    return list(db.session.scalars(query))


def films_in_early_access(now: datetime) -> list[Film]:
    """Films open to early-access subscribers right now, soonest release first."""
    query = (
        select(Film)
        .where(Film.early_access_at.is_not(None), Film.early_access_at <= now)
        .order_by(Film.release_date, Film.title)
    )
    return [film for film in db.session.scalars(query) if in_early_access(film, now)]
