"""Rate limits kept in Redis, as when several processes serve the site."""

from __future__ import annotations

import os
import uuid

import pytest
import redis

from mailer import create_app
from mailer.extensions import db
from tests.conftest import csrf_token_from

REDIS_URL = "redis://127.0.0.1:6379"


def redis_or_skip() -> redis.Redis:
    """A Redis client; outside CI a missing server skips, in CI it fails."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        client.close()
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("no Redis server on 127.0.0.1:6379")
    return client


def test_subscribe_limits_are_kept_in_redis(app, monkeypatch) -> None:
    """The limit holds across clients because it lives in Redis (the app fixture empties the DB)."""
    server = redis_or_skip()
    prefix = f"mailer-test-{uuid.uuid4().hex}"
    monkeypatch.setenv("MAILER_RATELIMIT_STORAGE_URL", REDIS_URL)
    redis_app = create_app(
        {
            "TESTING": True,
            "RATELIMIT_KEY_PREFIX": prefix,
            "MAILER_SUBSCRIBE_LIMIT_PER_ADDRESS": "1 per hour",
        }
    )
    assert redis_app.config["RATELIMIT_STORAGE_URI"] == REDIS_URL
    codes = []
    for _ in range(2):
        # A fresh client each time: like a second web process, it shares nothing but Redis.
        client = redis_app.test_client()
        token = csrf_token_from(client.get("/subscribe").get_data(as_text=True))
        data = {"csrf_token": token, "email": "redis@example.org", "topics": ["digest"]}
        codes.append(client.post("/subscribe", data=data).status_code)
    try:
        assert codes == [303, 429]
        assert list(server.scan_iter(match=f"*{prefix}*"))
    finally:
        for key in server.scan_iter(match=f"*{prefix}*"):
            server.delete(key)
        server.close()
        with redis_app.app_context():
            db.session.remove()
            db.engine.dispose()
