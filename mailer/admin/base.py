"""The admin blueprint, its sign-in guard and the time-zone helpers its views share."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Blueprint, redirect, request, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

bp = Blueprint("admin", __name__, url_prefix="/admin")

# Endpoints an anonymous visitor may reach; every other /admin route needs a signed-in admin.
PUBLIC_ENDPOINTS = frozenset({"admin.sign_in"})


@bp.before_request
def require_admin() -> Response | None:
    """Send anonymous visitors to the sign-in page, whatever /admin route they asked for."""
    if request.endpoint in PUBLIC_ENDPOINTS or current_user.is_authenticated:
        return None
    return redirect(url_for("admin.sign_in", next=request.full_path.rstrip("?")))


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
