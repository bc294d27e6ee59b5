"""API token scopes: every API route, for every scope, is allowed or refused with a 403."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import select

from mailer.api.scopes import SCOPES
from mailer.api_tokens import create_api_token
from mailer.extensions import db
from mailer.models import ApiScope, ApiToken, utcnow
from tests.conftest import admin_csrf

R, W, A = "read", "write", "admin"
RANK = {R: 0, W: 1, A: 2}
# The least scope of every (endpoint, method) of the API, stated here on its own.
EXPECTED = {
    ("films.list_films", "GET"): R,
    ("films.get_film", "GET"): R,
    ("films.create_film", "POST"): W,
    ("films.update_film", "PATCH"): W,
    ("films.remove_film", "DELETE"): W,
    ("digests.list_digests", "GET"): R,
    ("digests.get_digest", "GET"): R,
    ("digests.create", "POST"): W,
    ("digests.update", "PATCH"): W,
    ("digests.duplicate", "POST"): W,
    ("digests.send", "POST"): W,
    ("digests.pause", "POST"): W,
    ("digests.resume", "POST"): W,
    ("digests.cancel", "POST"): W,
    ("subscribers.list_subscribers", "GET"): R,
    ("subscribers.get_subscriber", "GET"): R,
    ("subscribers.create_subscriber", "POST"): W,
    ("subscribers.delete_subscriber", "DELETE"): A,
    ("suppressions.list_suppressions", "GET"): R,
    ("bounces.list_bounces", "GET"): R,
    ("suppressions.create_suppression", "POST"): W,
    ("suppressions.delete_suppression", "DELETE"): A,
}
UNAUTHENTICATED = {"api-docs.openapi_json"}


def api_routes(app: Flask) -> list[tuple[str, str, str]]:
    """(endpoint, method, url) of every API request that needs a token."""
    routes = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/") or rule.endpoint in UNAUTHENTICATED:
            continue
        url = rule.build({name: 999 for name in rule.arguments}, append_unknown=False)[1]
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            routes.append((rule.endpoint, method, url))
    return routes


def test_the_table_names_every_api_route(app: Flask) -> None:
    routed = {(endpoint, method) for endpoint, method, _url in api_routes(app)}
    assert routed == set(EXPECTED), "add the new request to EXPECTED and to mailer/api/scopes.py"
    writes = {endpoint for (endpoint, method), scope in EXPECTED.items() if method != "GET"}
    assert set(SCOPES) == writes


@pytest.mark.parametrize("scope", [R, W, A])
def test_every_api_route_allows_or_refuses_each_scope(app: Flask, scope: str) -> None:
    with app.app_context():
        _token, plaintext = create_api_token(f"{scope} token", utcnow(), ApiScope(scope))
        db.session.commit()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {plaintext}"}
    for endpoint, method, url in api_routes(app):
        body = {} if method in {"POST", "PATCH"} else None
        response = client.open(url, method=method, headers=headers, json=body)
        assert response.status_code < 500, (endpoint, method)
        if RANK[scope] >= RANK[EXPECTED[(endpoint, method)]]:
            assert response.status_code != 403, (endpoint, method)
        else:
            assert response.status_code == 403, (endpoint, method, response.status_code)
            message = response.get_json()["message"]
            assert f"scope is {scope}" in message, message


def test_cli_creates_tokens_of_a_scope_and_defaults_to_admin(app: Flask, runner) -> None:
    plain = runner.invoke(args=["api-token", "create", "cms"])
    reader = runner.invoke(args=["api-token", "create", "stats", "--scope", "read"])
    bad = runner.invoke(args=["api-token", "create", "x", "--scope", "root"])
    assert plain.exit_code == reader.exit_code == 0
    assert bad.exit_code != 0 and "root" in bad.output
    with app.app_context():
        scopes = dict(db.session.execute(select(ApiToken.name, ApiToken.scope)).all())
    assert scopes == {"cms": "admin", "stats": "read"}


def test_admin_page_creates_and_shows_scoped_tokens(app: Flask, admin_client) -> None:
    token = admin_csrf(admin_client)
    made = admin_client.post(
        "/admin/api-tokens", data={"csrf_token": token, "name": "dash", "scope": "read"}
    )
    assert made.status_code == 201 and "<td>read</td>" in made.get_data(as_text=True)
    bad = admin_client.post(
        "/admin/api-tokens", data={"csrf_token": token, "name": "x", "scope": "root"}
    )
    assert bad.status_code == 400
