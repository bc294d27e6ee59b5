"""Admin roles: every /admin route, for every role, is allowed or refused with a 403 page."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from mailer.admin.auth import create_admin, start_session
from mailer.admin.permissions import PERMISSIONS
from mailer.extensions import db
from mailer.models import Admin, AdminRole, utcnow
from tests.conftest import ADMIN_PASSWORD, csrf_token_from, sign_in

V, E, OWN = "viewer", "editor", "owner"
RANK = {V: 0, E: 1, OWN: 2}
# The least role for (GET, POST) of every admin endpoint; None where the method is not routed.
# Stated here on its own, so a change to mailer/admin/permissions.py must be made twice.
EXPECTED: dict[str, tuple[str | None, str | None]] = {
    "admin.account": (V, V),
    "admin.account_timezone": (None, V),
    "admin.sign_out": (None, V),
    "admin.sign_out_everywhere": (None, V),
    "admin.two_factor": (V, None),
    "admin.two_factor_enable": (None, V),
    "admin.two_factor_disable": (None, V),
    "admin.home": (V, None),
    "admin.films": (V, None),
    "admin.film_new": (E, E),
    "admin.film_edit": (V, E),
    "admin.film_delete": (None, E),
    "admin.digests": (V, None),
    "admin.digest_new": (E, E),
    "admin.digest_edit": (V, E),
    "admin.digest_duplicate": (None, E),
    "admin.digest_preview_frame": (V, None),
    "admin.digest_test_send": (None, E),
    "admin.digest_delivery": (V, None),
    "admin.digest_schedule": (None, E),
    "admin.digest_pause": (None, E),
    "admin.digest_resume": (None, E),
    "admin.digest_cancel": (None, E),
    "admin.early_access": (V, None),
    "admin.early_access_send": (None, E),
    "admin.subscribers": (V, None),
    "admin.subscriber_detail": (V, None),
    "admin.subscribers_export": (E, None),
    "admin.subscriber_unsubscribe": (E, E),
    "admin.subscriber_erase": (OWN, OWN),
    "admin.subscribers_import": (E, E),
    "admin.subscribers_import_run": (None, E),
    "admin.suppressions": (V, None),
    "admin.suppression_add": (None, E),
    "admin.suppression_remove": (None, OWN),
    "admin.embed_forms": (V, None),
    "admin.embed_form": (V, None),
    "admin.embed_form_new": (None, OWN),
    "admin.embed_form_revoke": (None, OWN),
    "admin.outbox": (V, None),
    "admin.outbox_message": (V, None),
    "admin.outbox_message_html": (V, None),
    "admin.api_tokens": (OWN, None),
    "admin.api_token_create": (None, OWN),
    "admin.api_token_revoke": (None, OWN),
    "admin.admins": (OWN, None),
    "admin.admin_role": (None, OWN),
    "admin.bounces": (V, None),
    "admin.bounce_report": (V, None),
    "admin.webhooks": (OWN, None),
    "admin.webhook_create": (None, OWN),
    "admin.webhook": (OWN, None),
    "admin.webhook_test": (None, OWN),
    "admin.webhook_enabled": (None, OWN),
    "admin.webhook_delete": (None, OWN),
}
PUBLIC = {"admin.sign_in", "admin.sign_in_code"}
# Signing out ends the client's session; those two are checked last, one request each.
ENDS_SESSION = {"admin.sign_out", "admin.sign_out_everywhere"}


def admin_routes(app: Flask) -> list[tuple[str, str, str]]:
    """(endpoint, method, url) for every routed method of every /admin endpoint."""
    routes = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("admin.") or rule.endpoint in PUBLIC:
            continue
        values = {name: ("x" if name == "name" else 999) for name in rule.arguments}
        url = rule.build(values, append_unknown=False)[1]
        for method in sorted((rule.methods or set()) & {"GET", "POST"}):
            routes.append((rule.endpoint, method, url))
    return routes


def signed_in_as(app: Flask, role: str) -> FlaskClient:
    """A client with a live session of a new admin of ``role`` (no sign-in form: no rate limit)."""
    with app.app_context():
        admin = create_admin(f"{role}@example.org", ADMIN_PASSWORD, utcnow(), role=AdminRole(role))
        user_id = start_session(admin, utcnow()).get_id()
        db.session.commit()
    client = app.test_client()
    with client.session_transaction() as session:
        session["_user_id"] = user_id
        session["_fresh"] = True
    return client


def test_the_table_names_every_admin_route(app: Flask) -> None:
    routed = {endpoint for endpoint, _method, _url in admin_routes(app)}
    assert routed == set(EXPECTED), "add the new endpoint to EXPECTED and to PERMISSIONS"
    assert set(PERMISSIONS) == routed
    for endpoint, method, _url in admin_routes(app):
        assert EXPECTED[endpoint][method == "POST"] is not None, (endpoint, method)


@pytest.mark.parametrize("role", [V, E, OWN])
def test_every_route_allows_or_refuses_each_role(app: Flask, role: str) -> None:
    client = signed_in_as(app, role)
    token = csrf_token_from(client.get("/admin/account").get_data(as_text=True))
    results = {}
    routes = sorted(admin_routes(app), key=lambda route: route[0] in ENDS_SESSION)
    for endpoint, method, url in routes:
        if endpoint == "admin.sign_out_everywhere":
            continue  # would also end the session sign_out ends; see test_admin_sessions.py
        if method == "GET":
            response = client.get(url)
        else:
            response = client.post(url, data={"csrf_token": token})
        least = EXPECTED[endpoint][method == "POST"]
        assert least is not None
        allowed = RANK[role] >= RANK[least]
        results[(endpoint, method)] = response.status_code
        assert response.status_code < 500, (endpoint, method, response.status_code)
        if allowed:
            assert response.status_code != 403, (endpoint, method)
        else:
            assert response.status_code == 403, (endpoint, method, response.status_code)
            page = response.get_data(as_text=True)
            assert f"Your role ({role}) cannot do that" in page
    assert len(results) == len(routes) - 1


@pytest.mark.parametrize("role", [V, E, OWN])
def test_sign_out_everywhere_is_for_every_role(app: Flask, role: str) -> None:
    client = signed_in_as(app, role)
    token = csrf_token_from(client.get("/admin/account").get_data(as_text=True))
    response = client.post("/admin/sign-out-everywhere", data={"csrf_token": token})
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 302  # signed out


def test_a_route_missing_from_the_table_needs_an_owner(app: Flask) -> None:
    from mailer.admin.permissions import role_allows

    assert not role_allows(E, "admin.some_new_view", "GET")
    assert not role_allows(V, "admin.some_new_view", "POST")
    assert role_allows(OWN, "admin.some_new_view", "POST")


def test_importing_people_as_already_opted_in_needs_an_owner(app: Flask) -> None:
    editor = signed_in_as(app, E)
    token = csrf_token_from(editor.get("/admin/account").get_data(as_text=True))
    form = {"csrf_token": token, "packed": "", "opted_in": "1"}
    assert editor.post("/admin/subscribers/import/run", data=form).status_code == 403
    form.pop("opted_in")
    assert editor.post("/admin/subscribers/import/run", data=form).status_code == 400
    owner = signed_in_as(app, OWN)
    token = csrf_token_from(owner.get("/admin/account").get_data(as_text=True))
    form = {"csrf_token": token, "packed": "", "opted_in": "1"}
    assert owner.post("/admin/subscribers/import/run", data=form).status_code == 400


def test_menus_show_only_what_the_role_may_use(app: Flask) -> None:
    def menu(client: FlaskClient) -> set[str]:
        page = client.get("/admin/").get_data(as_text=True)
        nav = page[page.index('<nav aria-label="Admin">') : page.index("</nav>")]
        return set(re.findall(r'<a href="(/admin/[^"]*)"', nav))

    viewer, editor, owner = (menu(signed_in_as(app, role)) for role in (V, E, OWN))
    assert "/admin/api-tokens" not in viewer | editor
    assert "/admin/admins" not in viewer | editor
    assert {"/admin/api-tokens", "/admin/admins", "/admin/films", "/admin/digests"} <= owner
    assert "/admin/digests" in viewer


def test_create_admin_roles_first_owner_then_editor(app: Flask, runner) -> None:
    first = runner.invoke(args=["create-admin", "first@example.org", "--password", "x" * 20])
    second = runner.invoke(args=["create-admin", "second@example.org", "--password", "x" * 20])
    viewer = runner.invoke(
        args=["create-admin", "look@example.org", "--password", "x" * 20, "--role", "viewer"]
    )
    bad = runner.invoke(
        args=["create-admin", "bad@example.org", "--password", "x" * 20, "--role", "boss"]
    )
    assert "(owner)" in first.output and "(editor)" in second.output
    assert "(viewer)" in viewer.output
    assert bad.exit_code != 0 and "boss" in bad.output
    with app.app_context():
        roles = dict(db.session.execute(select(Admin.email, Admin.role)).all())
    assert roles == {
        "first@example.org": "owner",
        "second@example.org": "editor",
        "look@example.org": "viewer",
    }


def test_owner_changes_roles_but_never_demotes_the_last_owner(app: Flask) -> None:
    owner = signed_in_as(app, OWN)
    signed_in_as(app, V)
    with app.app_context():
        ids = dict(db.session.execute(select(Admin.role, Admin.id)).all())
    token = csrf_token_from(owner.get("/admin/admins").get_data(as_text=True))
    last = owner.post(f"/admin/admins/{ids[OWN]}/role", data={"csrf_token": token, "role": E})
    assert last.status_code == 400 and "last owner" in last.get_data(as_text=True)
    bad = owner.post(f"/admin/admins/{ids[V]}/role", data={"csrf_token": token, "role": "god"})
    assert bad.status_code == 400
    promoted = owner.post(f"/admin/admins/{ids[V]}/role", data={"csrf_token": token, "role": OWN})
    assert promoted.status_code == 302
    demoted = owner.post(f"/admin/admins/{ids[OWN]}/role", data={"csrf_token": token, "role": V})
    assert demoted.status_code == 302
    # The role is read on every request: the demoted owner is refused at once.
    assert owner.get("/admin/admins").status_code == 403
    with app.app_context():
        roles = sorted(db.session.scalars(select(Admin.role)))
    assert roles == [OWN, V]


def test_signing_in_through_the_form_carries_the_role(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        create_admin("o@example.org", ADMIN_PASSWORD, utcnow())
        create_admin("v@example.org", ADMIN_PASSWORD, utcnow(), role=AdminRole.VIEWER)
        db.session.commit()
    assert sign_in(client, "v@example.org", ADMIN_PASSWORD).status_code == 302
    assert client.get("/admin/films").status_code == 200
    assert client.get("/admin/films/new").status_code == 403


def test_pages_hide_the_buttons_a_viewer_cannot_use(app: Flask) -> None:
    editor, viewer = signed_in_as(app, E), signed_in_as(app, V)
    films = viewer.get("/admin/films").get_data(as_text=True)
    assert "Add a film" not in films
    assert "Add a film" in editor.get("/admin/films").get_data(as_text=True)
    assert "Compose a digest" not in viewer.get("/admin/digests").get_data(as_text=True)
    suppressions = viewer.get("/admin/suppressions").get_data(as_text=True)
    assert "Suppress an address" not in suppressions
    assert "Suppress an address" in editor.get("/admin/suppressions").get_data(as_text=True)
