"""Behind reverse proxies: X-Forwarded-* counts only with MAILER_TRUSTED_PROXIES, and then only
the hops it names, for the per-IP limits, the consent records and https."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from mailer import create_app
from mailer.config import ConfigError, load_settings
from mailer.extensions import db, limiter
from mailer.models import ConsentEvent
from tests.conftest import TEST_SECRET, csrf_token_from

PROXY = "10.0.0.5"  # the reverse proxy, as the app sees it
SITE = "news.example.org"


def settings(tmp_path: Path, **env: str) -> dict[str, object]:
    return load_settings({"MAILER_SECRET_KEY": TEST_SECRET, **env}, tmp_path)


def test_no_proxy_is_trusted_unless_configured(tmp_path: Path) -> None:
    assert settings(tmp_path)["MAILER_TRUSTED_PROXIES"] == 0
    assert settings(tmp_path, MAILER_TRUSTED_PROXIES="")["MAILER_TRUSTED_PROXIES"] == 0
    assert settings(tmp_path, MAILER_TRUSTED_PROXIES="2")["MAILER_TRUSTED_PROXIES"] == 2


@pytest.mark.parametrize("raw", ["-1", "one", "1.5"])
def test_a_bad_proxy_count_is_refused_by_name(tmp_path: Path, raw: str) -> None:
    with pytest.raises(ConfigError, match="MAILER_TRUSTED_PROXIES") as caught:
        settings(tmp_path, MAILER_TRUSTED_PROXIES=raw)
    assert "\n" not in str(caught.value)


def make_app(hops: int) -> Iterator[Flask]:
    app = create_app(
        {
            "TESTING": True,
            "MAILER_TRUSTED_PROXIES": hops,
            "MAILER_SUBSCRIBE_LIMIT_PER_IP": "2 per hour",
        }
    )
    limiter.reset()
    yield app
    limiter.reset()
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def direct(app: Flask) -> Iterator[Flask]:
    """The app with the default: no proxy trusted."""
    yield from make_app(0)


@pytest.fixture
def proxied(app: Flask) -> Iterator[Flask]:
    """The app behind one reverse proxy."""
    yield from make_app(1)


def subscribe(client: FlaskClient, email: str, forwarded_for: str, **headers: str) -> int:
    """Post the sign-up form through the proxy for a visitor at ``forwarded_for``."""
    environ = {"REMOTE_ADDR": PROXY}
    page = client.get("/subscribe", environ_base=environ)
    response = client.post(
        "/subscribe",
        data={"csrf_token": csrf_token_from(page.get_data(as_text=True)), "email": email,
              "topics": ["digest"]},
        headers={"X-Forwarded-For": forwarded_for, **headers},
        environ_base=environ,
    )  # fmt: skip
    return response.status_code


def consent_ips(app: Flask) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(ConsentEvent.ip).order_by(ConsentEvent.id)))


def test_without_trusted_proxies_forwarded_for_is_ignored(direct: Flask) -> None:
    client = direct.test_client()
    assert subscribe(client, "a@example.org", "203.0.113.7") == 303
    assert subscribe(client, "b@example.org", "198.51.100.9") == 303
    # Two visitors by their headers, one address to the app: they share one limit.
    assert subscribe(client, "c@example.org", "192.0.2.44") == 429
    assert consent_ips(direct) == [PROXY, PROXY]


def test_with_one_trusted_proxy_its_forwarded_for_is_the_visitor(proxied: Flask) -> None:
    client = proxied.test_client()
    # A visitor may send a header of their own: only the hop the proxy added counts.
    assert subscribe(client, "a@example.org", "1.2.3.4, 203.0.113.7") == 303
    assert subscribe(client, "b@example.org", "5.6.7.8, 203.0.113.7") == 303
    assert subscribe(client, "c@example.org", "9.9.9.9, 203.0.113.7") == 429
    # Another visitor behind the same proxy has a limit of their own.
    assert subscribe(client, "d@example.org", "198.51.100.9") == 303
    assert consent_ips(proxied) == ["203.0.113.7", "203.0.113.7", "198.51.100.9"]


def test_with_a_trusted_proxy_the_request_is_as_the_visitor_made_it(proxied: Flask) -> None:
    """https and the public host come from the proxy: CSRF's referrer check on https compares
    the Referer with them, so a form posted on the public site passes and a foreign one fails."""
    client = proxied.test_client()
    https = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": SITE}
    ours = subscribe(client, "a@example.org", "203.0.113.7", Referer=f"https://{SITE}/", **https)
    assert ours == 303
    foreign = subscribe(
        client, "b@example.org", "203.0.113.8", Referer="https://elsewhere.example/", **https
    )
    assert foreign == 400
    assert consent_ips(proxied) == ["203.0.113.7"]
