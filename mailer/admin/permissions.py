"""Who may do what in /admin: the least role each endpoint needs, checked before every view.

The table is the one place roles are decided. An endpoint missing from it needs an owner, so a
new view is safe until someone decides otherwise (and tests/test_admin_roles.py fails until
the table names it).
"""

from __future__ import annotations

from typing import NamedTuple

from flask import request

from ..models import AdminRole

VIEWER, EDITOR, OWNER = AdminRole.VIEWER, AdminRole.EDITOR, AdminRole.OWNER
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Needs(NamedTuple):
    """The least role to look at an endpoint (GET) and to act on it (POST)."""

    look: AdminRole
    act: AdminRole


ANYONE = Needs(VIEWER, VIEWER)  # every signed-in admin: their own account and session
READ_ONLY = Needs(VIEWER, OWNER)  # pages only looked at (POST is not routed on them anyway)
EDITING = Needs(EDITOR, EDITOR)
OWNING = Needs(OWNER, OWNER)

PERMISSIONS: dict[str, Needs] = {
    # The signed-in admin's own account, sessions and two-factor sign-in.
    "admin.account": ANYONE,
    "admin.account_timezone": ANYONE,
    "admin.sign_out": ANYONE,
    "admin.sign_out_everywhere": ANYONE,
    "admin.two_factor": ANYONE,
    "admin.two_factor_enable": ANYONE,
    "admin.two_factor_disable": ANYONE,
    # Dashboards and read-only pages.
    "admin.home": READ_ONLY,
    "admin.films": READ_ONLY,
    "admin.digests": READ_ONLY,
    "admin.digest_delivery": READ_ONLY,
    "admin.digest_preview_frame": READ_ONLY,
    "admin.early_access": READ_ONLY,
    "admin.subscribers": READ_ONLY,
    "admin.subscriber_detail": READ_ONLY,
    "admin.suppressions": READ_ONLY,
    "admin.embed_forms": READ_ONLY,
    "admin.embed_form": READ_ONLY,
    "admin.bounces": READ_ONLY,
    "admin.bounce_report": READ_ONLY,
    "admin.outbox": READ_ONLY,
    "admin.outbox_message": READ_ONLY,
    "admin.outbox_message_html": READ_ONLY,
    # A film's or a digest's page is readable by all; saving it is an editor's job.
    "admin.film_edit": Needs(VIEWER, EDITOR),
    "admin.digest_edit": Needs(VIEWER, EDITOR),
    # Editors: films, digests (compose, test, schedule, send, pause, cancel), early access.
    "admin.film_new": EDITING,
    "admin.film_delete": EDITING,
    "admin.digest_new": EDITING,
    "admin.digest_duplicate": EDITING,
    "admin.digest_test_send": EDITING,
    "admin.digest_schedule": EDITING,
    "admin.digest_pause": EDITING,
    "admin.digest_resume": EDITING,
    "admin.digest_cancel": EDITING,
    "admin.early_access_send": EDITING,
    # Editors may also unsubscribe one person, suppress an address and import people who are
    # then sent a confirmation; the full address list leaves the building only with an editor.
    "admin.subscriber_unsubscribe": EDITING,
    "admin.suppression_add": EDITING,
    "admin.subscribers_import": EDITING,
    "admin.subscribers_import_run": EDITING,  # "already opted in" needs an owner: see below
    "admin.subscribers_export": EDITING,
    # Owners: what cannot be undone, or hands out access.
    "admin.subscriber_erase": OWNING,
    "admin.suppression_remove": OWNING,
    "admin.embed_form_new": OWNING,
    "admin.embed_form_revoke": OWNING,
    "admin.api_tokens": OWNING,
    "admin.api_token_create": OWNING,
    "admin.api_token_revoke": OWNING,
    "admin.admins": OWNING,
    "admin.admin_role": OWNING,
    # Webhook endpoints receive subscribers' addresses and hold signing secrets.
    "admin.webhooks": OWNING,
    "admin.webhook_create": OWNING,
    "admin.webhook": OWNING,
    "admin.webhook_test": OWNING,
    "admin.webhook_enabled": OWNING,
    "admin.webhook_delete": OWNING,
}
# Endpoints whose POST needs an owner when the form carries this field (its checkbox is on).
OWNER_WHEN_FORM_HAS = {"admin.subscribers_import_run": "opted_in"}
DEFAULT = OWNING


def least_role(endpoint: str, method: str) -> AdminRole:
    """The least role an endpoint needs for this method (owner for one not in the table)."""
    needs = PERMISSIONS.get(endpoint, DEFAULT)
    return needs.look if method in READ_METHODS else needs.act


def role_allows(role: str, endpoint: str, method: str = "GET") -> bool:
    """Whether an admin with ``role`` may use ``endpoint`` with ``method``."""
    return AdminRole(role).rank >= least_role(endpoint, method).rank


def request_allowed(role: str) -> bool:
    """Whether an admin with ``role`` may make the current request."""
    endpoint = request.endpoint or ""
    if not role_allows(role, endpoint, request.method):
        return False
    field = OWNER_WHEN_FORM_HAS.get(endpoint)
    if field and request.method not in READ_METHODS and request.form.get(field):
        return AdminRole(role) is OWNER
    return True
