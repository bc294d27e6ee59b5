"""Admin accounts, for owners: who can sign in, with which role, and changing a role."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response

from ..extensions import db
from ..models import Admin, AdminRole
from .auth import AdminInvalid, set_role
from .base import bp


def _page(errors: dict[str, str], status: int) -> tuple[str, int]:
    """The list of admins with a role form on each."""
    admins = db.session.scalars(select(Admin).order_by(Admin.email)).all()
    return render_template(
        "admin/admins.html", admins=admins, roles=list(AdminRole), errors=errors
    ), status


@bp.get("/admins")
def admins() -> tuple[str, int]:
    """Every admin account: address, role, two-factor sign-in, last sign-in."""
    return _page({}, 200)


@bp.post("/admins/<int:admin_id>/role")
def admin_role(admin_id: int) -> Response | tuple[str, int]:
    """Give an admin another role (the last owner stays an owner)."""
    admin = db.get_or_404(Admin, admin_id)
    try:
        set_role(admin, request.form.get("role", ""))
    except AdminInvalid as exc:
        db.session.rollback()
        return _page(exc.errors, 400)
    db.session.commit()
    flash(f"{admin.email} is now {admin.role}.")
    return redirect(url_for("admin.admins"))
