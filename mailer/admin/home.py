"""The admin home page: subscribers by status and a chart of confirmed subscribers over time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from flask import render_template
from sqlalchemy import Date, cast, func, select

from ..extensions import db
from ..models import Subscriber, SubscriberStatus, utcnow
from .base import bp

CHART_DAYS = 90
CHART_WIDTH, CHART_HEIGHT, CHART_PAD = 640, 220, 36


@dataclass(frozen=True)
class Chart:
    """A server-rendered line chart: the polyline's points and its axis labels."""

    points: str
    first_day: date
    last_day: date
    low: int
    high: int
    latest: int
    axis_top: int
    width: int = CHART_WIDTH
    height: int = CHART_HEIGHT
    pad: int = CHART_PAD


def subscribers_by_status() -> dict[str, int]:
    """How many subscribers are in each status (every status listed, zero included)."""
    rows = db.session.execute(
        select(Subscriber.status, func.count()).group_by(Subscriber.status)
    ).all()
    counts = {status.value: 0 for status in SubscriberStatus}
    counts.update({status: count for status, count in rows})
    return counts


def confirmed_per_day(now: datetime, days: int = CHART_DAYS) -> list[tuple[date, int]]:
    """Confirmed subscribers on each of the last ``days`` days, by UTC day of confirmation."""
    today = now.astimezone(UTC).date()
    first = today - timedelta(days=days - 1)
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    confirmed = Subscriber.status == SubscriberStatus.CONFIRMED
    before = db.session.scalar(
        select(func.count()).where(confirmed, Subscriber.confirmed_at < start)
    )
    day = _utc_day(Subscriber.confirmed_at)
    rows = db.session.execute(
        select(day, func.count()).where(confirmed, Subscriber.confirmed_at >= start).group_by(day)
    ).all()
    # SQLite gives the day as text, PostgreSQL as a date.
    added = {d if isinstance(d, date) else date.fromisoformat(d): n for d, n in rows}
    series, total = [], int(before or 0)
    for offset in range(days):
        current = first + timedelta(days=offset)
        total += added.get(current, 0)
        series.append((current, total))
    return series


def _utc_day(column: Any) -> Any:
    """The UTC calendar day of a timestamp column, in SQL."""
    if db.engine.dialect.name == "postgresql":
        # date() of a timestamptz follows the session's time zone; pin it to UTC.
        return cast(func.timezone("UTC", column), Date)
    return func.date(column)  # SQLite stores UTC without a zone


def chart_of(series: list[tuple[date, int]]) -> Chart:
    """Scale a series into the chart's drawing box."""
    values = [n for _, n in series]
    low, high = min(values), max(values)
    span = max(high - low, 1)
    inner_w = CHART_WIDTH - 2 * CHART_PAD
    inner_h = CHART_HEIGHT - 2 * CHART_PAD
    step = inner_w / max(len(series) - 1, 1)
    points = " ".join(
        f"{CHART_PAD + i * step:.1f},{CHART_PAD + inner_h - (n - low) / span * inner_h:.1f}"
        for i, n in enumerate(values)
    )
    return Chart(points, series[0][0], series[-1][0], low, high, values[-1], low + span)


@bp.get("/")
def home() -> str:
    """Subscribers by status and the confirmed-subscribers chart."""
    now = utcnow()
    return render_template(
        "admin/home.html",
        counts=subscribers_by_status(),
        chart=chart_of(confirmed_per_day(now)),
    )
