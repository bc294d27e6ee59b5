"""Admin home page: subscribers by status and the confirmed-subscribers chart."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from mailer.admin.home import chart_of, confirmed_per_day, subscribers_by_status
from mailer.extensions import db
from mailer.models import Subscriber, SubscriberStatus

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _subscribers(app) -> None:
    rows = []
    # Two confirmed long ago, then one a day on the last three days (one at 23:30 UTC).
    for n, at in enumerate(
        [
            NOW - timedelta(days=400),
            NOW - timedelta(days=200),
            datetime(2026, 11, 22, 23, 30, tzinfo=UTC),
            datetime(2026, 11, 23, 0, 30, tzinfo=UTC),
            datetime(2026, 11, 25, 8, 0, tzinfo=UTC),
        ]
    ):
        rows.append(Subscriber(email=f"c{n}@example.org", status="confirmed", confirmed_at=at))
    # Confirmed once, since unsubscribed: no longer counted.
    rows.append(
        Subscriber(
            email="gone@example.org",
            status="unsubscribed",
            confirmed_at=datetime(2026, 11, 24, tzinfo=UTC),
        )
    )
    rows += [Subscriber(email=f"p{n}@example.org", status="pending") for n in range(3)]
    for row in rows:
        row.nonce = "n" * 16
    with app.app_context():
        db.session.add_all(rows)
        db.session.commit()


def test_subscribers_by_status_lists_every_status(app) -> None:
    _subscribers(app)
    with app.app_context():
        assert subscribers_by_status() == {"pending": 3, "confirmed": 5, "unsubscribed": 1}


def test_confirmed_per_day_is_cumulative_by_utc_day(app) -> None:
    _subscribers(app)
    with app.app_context():
        series = confirmed_per_day(NOW, days=5)
    assert series == [
        (date(2026, 11, 21), 2),
        (date(2026, 11, 22), 3),
        (date(2026, 11, 23), 4),
        (date(2026, 11, 24), 4),
        (date(2026, 11, 25), 5),
    ]


def test_chart_scales_into_its_box() -> None:
    chart = chart_of([(date(2026, 1, d), n) for d, n in ((1, 10), (2, 15), (3, 20))])
    points = [tuple(map(float, p.split(","))) for p in chart.points.split()]
    assert [x for x, _ in points] == sorted(x for x, _ in points)
    assert points[0][1] == chart.height - chart.pad  # lowest value on the axis
    assert points[-1][1] == chart.pad  # highest at the top
    flat = chart_of([(date(2026, 1, 1), 0)])
    assert flat.points and flat.latest == 0 and flat.axis_top == 1


def test_home_page_shows_counts_and_an_inline_svg_chart(app, admin_client) -> None:
    _subscribers(app)
    response = admin_client.get("/admin/")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert re.search(r"<dt>confirmed</dt><dd><a [^>]+>5</a>", html)
    assert re.search(r"<dt>pending</dt><dd><a [^>]+>3</a>", html)
    assert '<svg viewBox="0 0 640 220" role="img"' in html
    assert len(re.search(r'<polyline class="series" points="([^"]+)"', html).group(1).split()) == 90
    assert "<script" not in html and "style=" not in html and "//cdn" not in html


def test_home_page_with_no_subscribers(admin_client) -> None:
    html = admin_client.get("/admin/").get_data(as_text=True)
    assert "0 confirmed subscribers today" in html
    assert SubscriberStatus.PENDING in html
