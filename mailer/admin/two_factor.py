"""Two-factor sign-in: TOTP codes (RFC 6238, pyotp), one-time recovery codes, and their pages."""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime, timedelta

import pyotp
import segno
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user
from markupsafe import Markup
from sqlalchemy import delete, select
from werkzeug.wrappers import Response

from ..extensions import db, limiter
from ..models import Admin, AdminRecoveryCode, AdminRole, utcnow
from .auth import PENDING_SECOND_STEP, finish_sign_in, hasher
from .base import bp, owes_two_factor

ISSUER = "Documentaries admin"
STEP_SECONDS = 30
# A code of the step before or after is accepted too: phones' clocks drift a little.
DRIFT_STEPS = 1
RECOVERY_CODES = 10
# Someone who passed the password step has this long to give the code.
SECOND_STEP_MAX_AGE = timedelta(minutes=5)
# Where the session keeps a secret being set up, until a code confirms it.
PENDING_SECRET = "two_factor_secret"
CODE_REFUSED = "That code is not right, or was used already."


class CodeRefused(Exception):
    """A wrong, expired or already used code."""


def step_of(now: datetime) -> int:
    """The 30-second time step ``now`` falls in."""
    return int(now.timestamp()) // STEP_SECONDS


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step near ``now`` whose TOTP code is ``code``, or None."""
    totp = pyotp.TOTP(secret)
    current = step_of(now)
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def provisioning_uri(secret: str, email: str) -> str:
    """The otpauth:// URI an authenticator app reads (from the QR code or typed in)."""
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=ISSUER)


def qr_svg(uri: str) -> Markup:
    """The URI as an inline SVG QR code, drawn on the server."""
    svg = segno.make(uri, error="m").svg_inline(scale=4, dark="#000", light="#fff")
    return Markup(svg)  # segno's own SVG of our own URI: nothing to escape


def _normal_recovery(code: str) -> str:
    """A recovery code as compared: lower case, without spaces or dashes."""
    return "".join(code.lower().split()).replace("-", "")


def new_recovery_codes(admin: Admin) -> list[str]:
    """Replace the admin's recovery codes with ten new ones; returns them (only hashes stay)."""
    db.session.execute(delete(AdminRecoveryCode).where(AdminRecoveryCode.admin_id == admin.id))
    codes = [
        f"{raw[:5]}-{raw[5:]}" for raw in (secrets.token_hex(5) for _ in range(RECOVERY_CODES))
    ]
    db.session.add_all(
        AdminRecoveryCode(admin_id=admin.id, code_hash=hasher().hash(_normal_recovery(code)))
        for code in codes
    )
    db.session.flush()
    return codes


def enable_two_factor(admin: Admin, secret: str, code: str, now: datetime) -> list[str]:
    """Turn two-factor sign-in on once a code proves the app has the secret; new recovery codes."""
    step = matching_step(secret, code.strip(), now)
    if step is None:
        raise CodeRefused(CODE_REFUSED)
    admin.totp_secret = secret
    admin.totp_last_step = step
    return new_recovery_codes(admin)


def disable_two_factor(admin: Admin) -> None:
    """Turn two-factor sign-in off and forget its secret and recovery codes."""
    admin.totp_secret = None
    admin.totp_last_step = None
    db.session.execute(delete(AdminRecoveryCode).where(AdminRecoveryCode.admin_id == admin.id))


def check_second_factor(admin: Admin, code: str, now: datetime) -> None:
    """Accept a fresh TOTP code or an unused recovery code (which is then spent); else refuse."""
    code = code.strip().replace(" ", "")
    if admin.totp_secret is None:
        raise CodeRefused(CODE_REFUSED)
    if code.isdigit() and len(code) == 6:
        step = matching_step(admin.totp_secret, code, now)
        # A code is good once: a replay within its window (or an older code) is refused.
        if step is None or (admin.totp_last_step is not None and step <= admin.totp_last_step):
            raise CodeRefused(CODE_REFUSED)
        admin.totp_last_step = step
        return
    wanted = _normal_recovery(code)
    unused = db.session.scalars(
        select(AdminRecoveryCode).where(
            AdminRecoveryCode.admin_id == admin.id, AdminRecoveryCode.used_at.is_(None)
        )
    )
    for recovery in unused:
        try:
            hasher().verify(recovery.code_hash, wanted)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            continue
        recovery.used_at = now
        return
    raise CodeRefused(CODE_REFUSED)


def unused_recovery_codes(admin: Admin) -> int:
    """How many recovery codes the admin has left."""
    return len(
        db.session.scalars(
            select(AdminRecoveryCode.id).where(
                AdminRecoveryCode.admin_id == admin.id, AdminRecoveryCode.used_at.is_(None)
            )
        ).all()
    )


# --- The second step of signing in ---------------------------------------------------------------


def _pending_admin(now: datetime) -> tuple[Admin, str] | None:
    """Who passed the password step in this session, recently, and where they were going."""
    pending = session.get(PENDING_SECOND_STEP)
    if not isinstance(pending, dict):
        return None
    since = pending.get("since")
    if (
        not isinstance(since, float)
        or now.timestamp() - since > SECOND_STEP_MAX_AGE.total_seconds()
    ):
        return None
    admin = db.session.get(Admin, pending.get("admin"))
    # A password change or "sign out everywhere" since the password step cancels it.
    if admin is None or admin.session_version != pending.get("version") or not admin.totp_secret:
        return None
    return admin, str(pending.get("next", ""))


@bp.route("/sign-in/code", methods=["GET", "POST"])
@limiter.limit("5 per minute", methods=["POST"])
def sign_in_code() -> Response | tuple[str, int]:
    """The second step of signing in: a code from the authenticator app or a recovery code."""
    now = utcnow()
    pending = _pending_admin(now)
    if pending is None:
        session.pop(PENDING_SECOND_STEP, None)
        flash("Please sign in again.")
        return redirect(url_for("admin.sign_in"))
    admin, next_path = pending
    if request.method == "POST":
        try:
            check_second_factor(admin, request.form.get("code", ""), now)
        except CodeRefused as exc:
            db.session.rollback()
            return render_template("admin/sign_in_code.html", error=str(exc)), 401
        return finish_sign_in(admin, next_path)
    return render_template("admin/sign_in_code.html", error=None), 200


# --- Setting it up and turning it off, from the account ------------------------------------------


def _signed_in() -> Admin:
    """The signed-in admin's row."""
    admin = db.session.get(Admin, current_user.id)
    assert admin is not None  # the user loader just found it
    return admin


def _setup_page(admin: Admin, error: str | None, status: int) -> tuple[str, int]:
    """The two-factor page: its state, or a new secret to scan and confirm."""
    secret = None
    if admin.totp_secret is None:
        secret = session.get(PENDING_SECRET) or pyotp.random_base32()
        session[PENDING_SECRET] = secret
    uri = provisioning_uri(secret, admin.email) if secret else ""
    page = render_template(
        "admin/two_factor.html",
        admin=admin,
        secret=secret,
        uri=uri,
        qr=qr_svg(uri) if uri else "",
        required=owes_two_factor(admin),
        codes_left=unused_recovery_codes(admin),
        error=error,
        recovery_codes=None,
    )
    return page, status


@bp.get("/account/two-factor")
def two_factor() -> tuple[str, int]:
    """Two-factor sign-in for the signed-in admin: set it up, or see it is on."""
    return _setup_page(_signed_in(), None, 200)


@bp.post("/account/two-factor")
def two_factor_enable() -> Response | tuple[str, int]:
    """Confirm the new secret with a code; show the recovery codes this once."""
    admin = _signed_in()
    secret = session.get(PENDING_SECRET)
    if admin.totp_secret is not None or not secret:
        return redirect(url_for("admin.two_factor"))
    try:
        codes = enable_two_factor(admin, secret, request.form.get("code", ""), utcnow())
    except CodeRefused as exc:
        db.session.rollback()
        return _setup_page(admin, str(exc), 400)
    db.session.commit()
    session.pop(PENDING_SECRET, None)
    page = render_template(
        "admin/two_factor.html",
        admin=admin,
        secret=None,
        recovery_codes=codes,
        required=False,
        codes_left=len(codes),
        error=None,
    )
    return page, 200


@bp.post("/account/two-factor/disable")
def two_factor_disable() -> Response | tuple[str, int]:
    """Turn two-factor sign-in off, given a current code or a recovery code."""
    admin = _signed_in()
    if admin.totp_secret is None:
        return redirect(url_for("admin.two_factor"))
    if current_app.config["MAILER_ADMIN_2FA"] == "required" and admin.role == AdminRole.OWNER:
        return _setup_page(admin, "Owners must keep two-factor sign-in on here.", 400)
    try:
        check_second_factor(admin, request.form.get("code", ""), utcnow())
    except CodeRefused as exc:
        db.session.rollback()
        return _setup_page(admin, str(exc), 400)
    disable_two_factor(admin)
    db.session.commit()
    flash("Two-factor sign-in is off.")
    return redirect(url_for("admin.two_factor"))
