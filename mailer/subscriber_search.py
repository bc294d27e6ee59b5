"""Finding subscribers: the filter the admin list and the API share, and its keyset pages."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Select, select

from .extensions import db
from .models import Subscriber, SubscriberStatus

PAGE_SIZE = 50
QUERY_MAX = 254  # the longest address; a longer search cannot match one
TOPICS = {"digest": Subscriber.wants_digest, "early_access": Subscriber.wants_early_access}


@dataclass(frozen=True)
class SubscriberFilter:
    """What a list of subscribers is narrowed to."""

    query: str = ""
    status: str = ""
    topic: str = ""

    @classmethod
    def lenient(cls, query: str, status: str, topic: str) -> SubscriberFilter:
        """A filter from typed or linked values: unknown statuses and topics are ignored."""
        return cls(
            query=query.strip()[:QUERY_MAX],
            status=status if status in set(SubscriberStatus) else "",
            topic=topic if topic in TOPICS else "",
        )

    def apply(self, query: Select[Subscriber]) -> Select[Subscriber]:
        """Add this filter's conditions to a query of subscribers."""
        if self.query:
            text = self.query.lower()
            if "@" in text:
                query = query.where(Subscriber.email == text)  # a whole address: exact match
            else:
                escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                query = query.where(Subscriber.email.like(f"{escaped}%", escape="\\"))
        if self.status:
            query = query.where(Subscriber.status == self.status)
        if self.topic:
            query = query.where(TOPICS[self.topic].is_(True))
        return query

    def args(self) -> dict[str, str]:
        """The filter as query-string arguments, empty ones left out."""
        return {
            k: v
            for k, v in (("q", self.query), ("status", self.status), ("topic", self.topic))
            if v
        }


def subscribers_before(flt: SubscriberFilter, after: int | None, limit: int) -> list[Subscriber]:
    """Up to ``limit`` matching subscribers, newest first, with ids below ``after`` (if given)."""
    query = flt.apply(select(Subscriber))
    if after is not None:
        query = query.where(Subscriber.id < after)
    return list(db.session.scalars(query.order_by(Subscriber.id.desc()).limit(limit)))


def subscriber_page(
    flt: SubscriberFilter, after: int | None, size: int = PAGE_SIZE
) -> tuple[list[Subscriber], int | None]:
    """One page of subscribers, newest first, after the id ``after``; and the next page's key."""
    rows = subscribers_before(flt, after, size + 1)
    next_after = rows[size - 1].id if len(rows) > size else None
    return rows[:size], next_after
