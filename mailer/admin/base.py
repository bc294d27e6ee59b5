"""The admin blueprint, its sign-in guard and the time-zone helpers its views share."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.exceptions import Forbidden
from werkzeug.wrappers import Response

from ..models import Admin, AdminRole
from .permissions import request_allowed, role_allows

bp = Blueprint("admin", __name__, url_prefix="/admin")

# Endpoints an anonymous visitor may reach; every other /admin route needs a signed-in admin.
PUBLIC_ENDPOINTS = frozenset({"admin.sign_in", "admin.sign_in_code"})
# All an owner may do while MAILER_ADMIN_2FA=required and two-factor sign-in is not set up.
SETUP_ENDPOINTS = frozenset(
    {"admin.two_factor", "admin.two_factor_enable", "admin.sign_out", "admin.sign_out_everywhere"}
)


@bp.before_request
def require_admin() -> Response | None:
    """Anonymous visitors go to sign in; owners owing two-factor set-up go to it; then roles."""
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if not current_user.is_authenticated:
        return redirect(url_for("admin.sign_in", next=request.full_path.rstrip("?")))
    if request.endpoint not in SETUP_ENDPOINTS and owes_two_factor(current_user.admin):
        return redirect(url_for("admin.two_factor"))
    if not request_allowed(current_user.role):
        abort(403)
    return None


def owes_two_factor(admin: Admin) -> bool:
    """Whether this admin is an owner who must first set up two-factor sign-in."""
    return (
        current_app.config["MAILER_ADMIN_2FA"] == "required"
        and admin.role == AdminRole.OWNER
        and admin.totp_secret is None
    )


@bp.errorhandler(403)
def refused(error: Forbidden) -> tuple[str, int]:
    """A refused action: a page that says which role it needs, never a stack trace."""
    return render_template("admin/forbidden.html"), 403


@bp.app_context_processor
def permission_helpers() -> dict[str, object]:
    """``can(endpoint, method)`` in templates, to hide what the admin's role may not use."""

    def can(endpoint: str, method: str = "GET") -> bool:
        return bool(current_user.is_authenticated) and role_allows(
            current_user.role, endpoint, method
        )

    return {"can": can}


def admin_zone() -> ZoneInfo:
    """The signed-in admin's time zone (UTC when it is unknown)."""
    name = getattr(current_user, "timezone", "UTC") if current_user.is_authenticated else "UTC"
    return zone_named(name)


def zone_named(name: str) -> ZoneInfo:
    """A ZoneInfo by name, falling back to UTC for a name the system does not know."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_input_to_utc(value: str, zone: ZoneInfo) -> datetime | str:
    """A datetime-local form value read in ``zone``, as aware UTC; unparseable text is returned."""
    text = value.strip()
    if not text:
        return ""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return text
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(UTC)


def utc_to_local_input(value: datetime | None, zone: ZoneInfo) -> str:
    """An aware datetime as a datetime-local form value in ``zone``."""
    if value is None:
        return ""
    return value.astimezone(zone).strftime("%Y-%m-%dT%H:%M")


def format_local(value: datetime | None) -> str:
    """An aware datetime shown in the admin's time zone, with the zone's abbreviation."""
    if value is None:
        return ""
    return value.astimezone(admin_zone()).strftime("%Y-%m-%d %H:%M %Z")


def safe_next(target: str | None) -> str:
    """Where to go after signing in: an /admin path on this site, never another host."""
    if target and target.startswith("/admin") and "//" not in target and "\\" not in target:
        return target
    return url_for("admin.home")
