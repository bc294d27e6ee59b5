"""Admin accounts: argon2 passwords, roles, sign-in and sign-out, sessions, account commands."""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import datetime
from functools import cache
from zoneinfo import available_timezones

import click
from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from email_validator import EmailNotValidError, validate_email
from flask import Flask, current_app, flash, redirect, render_template, request, session, url_for
from flask.cli import with_appcontext
from flask_login import UserMixin, current_user, login_user, logout_user
from sqlalchemy import delete, func, select
from werkzeug.wrappers import Response

from ..extensions import db, limiter, login_manager
from ..models import Admin, AdminRole, AdminSession, utcnow
from .base import bp, safe_next

log = logging.getLogger(__name__)

PASSWORD_MIN = 12
PASSWORD_MAX = 1024
SIGN_IN_FAILED = "That address and password do not match an admin account."
# Where the session keeps who passed the password step and still owes a two-factor code.
PENDING_SECOND_STEP = "two_factor_pending"
STRONG_HASHER = PasswordHasher()  # argon2id, RFC 9106 low-memory profile
# Tests sign in hundreds of times; the cheapest argon2id keeps them quick and changes nothing else.
TEST_HASHER = PasswordHasher.from_parameters(profiles.CHEAPEST)


def hasher() -> PasswordHasher:
    """The password hasher: the strong one, or the cheapest one in the test suite."""
    return TEST_HASHER if current_app.testing else STRONG_HASHER


class AdminInvalid(ValueError):
    """Account data that cannot be stored; ``errors`` maps each bad field to what is wrong."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))
        self.errors = errors


class SignInFailed(Exception):
    """Unknown address or wrong password: deliberately the same failure for both."""


class SignedInAdmin(UserMixin):
    """The Flask-Login user: an Admin, with its session version and this session's key."""

    def __init__(self, admin: Admin, session_key: str) -> None:
        """Wrap an Admin row signed in under ``session_key`` (see start_session)."""
        self.admin = admin
        self.session_key = session_key

    @property
    def id(self) -> int:
        """The admin's id."""
        return self.admin.id

    @property
    def email(self) -> str:
        """The admin's address."""
        return self.admin.email

    @property
    def timezone(self) -> str:
        """The admin's time zone name."""
        return self.admin.timezone

    @property
    def role(self) -> str:
        """The admin's role: owner, editor or viewer."""
        return self.admin.role

    def get_id(self) -> str:
        """The session id "<admin id>:<session version>:<session key>"; either moving ends it."""
        return f"{self.admin.id}:{self.admin.session_version}:{self.session_key}"


@login_manager.user_loader
def load_admin(user_id: str) -> SignedInAdmin | None:
    """The signed-in admin, or None when the session was ended or its version moved on."""
    admin_id, version, key = [*user_id.split(":", 2), "", ""][:3]
    if not (admin_id.isdigit() and version.isdigit() and key):
        return None
    admin = db.session.get(Admin, int(admin_id))
    if admin is None or admin.session_version != int(version):
        return None
    live = db.session.scalar(
        select(AdminSession.id).where(
            AdminSession.admin_id == admin.id, AdminSession.key_hash == _key_hash(key)
        )
    )
    return SignedInAdmin(admin, key) if live is not None else None


def _key_hash(key: str) -> str:
    """The stored form of a session key (the cookie carries the key itself)."""
    return hashlib.sha256(key.encode()).hexdigest()


def start_session(admin: Admin, now: datetime) -> SignedInAdmin:
    """Record a new signed-in session of this admin; the returned user goes to login_user."""
    key = secrets.token_urlsafe(32)
    db.session.add(AdminSession(admin_id=admin.id, key_hash=_key_hash(key), created_at=now))
    db.session.flush()
    return SignedInAdmin(admin, key)


def end_session(user: SignedInAdmin) -> None:
    """End this one session: its row goes, the admin's other sessions go on."""
    db.session.execute(
        delete(AdminSession).where(
            AdminSession.admin_id == user.admin.id,
            AdminSession.key_hash == _key_hash(user.session_key),
        )
    )


def normalise_admin_email(address: str) -> str:
    """An admin address as stored: validated, lower-case."""
    try:
        return validate_email(address.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise AdminInvalid({"email": str(exc)}) from None


def hash_password(password: str) -> str:
    """An argon2id hash of a password that meets the length rules."""
    if len(password) < PASSWORD_MIN:
        raise AdminInvalid({"password": f"must be at least {PASSWORD_MIN} characters"})
    if len(password) > PASSWORD_MAX:
        raise AdminInvalid({"password": f"must be at most {PASSWORD_MAX} characters"})
    return hasher().hash(password)


@cache
def _dummy_hash(chosen: PasswordHasher) -> str:
    """A hash to verify against for unknown addresses, so they take as long as known ones."""
    return chosen.hash("not the password of any account")


def _password_matches(password_hash: str, password: str) -> bool:
    """Whether the password matches the hash (a damaged hash never matches)."""
    try:
        return hasher().verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def create_admin(
    email: str,
    password: str,
    now: datetime,
    timezone: str = "UTC",
    role: AdminRole | None = None,
) -> Admin:
    """Add an admin account; raise AdminInvalid for a bad address, password or time zone.

    Without a role, the first admin is an owner (someone must be) and later ones editors.
    """
    address = normalise_admin_email(email)
    if db.session.scalar(select(Admin.id).where(Admin.email == address)) is not None:
        raise AdminInvalid({"email": f"an admin with the address {address} already exists"})
    if role is None:
        role = AdminRole.EDITOR if db.session.scalar(select(Admin.id).limit(1)) else AdminRole.OWNER
    admin = Admin(
        email=address,
        password_hash=hash_password(password),
        session_version=1,
        created_at=now,
        role=role,
    )
    set_timezone(admin, timezone)
    db.session.add(admin)
    db.session.flush()
    return admin


def find_admin(email: str) -> Admin | None:
    """The admin with this address, if any."""
    return db.session.scalar(select(Admin).where(Admin.email == email.strip().lower()))


def set_password(admin: Admin, password: str) -> None:
    """Change an admin's password and end every session the admin has."""
    admin.password_hash = hash_password(password)
    end_sessions(admin)


def set_timezone(admin: Admin, name: str) -> None:
    """Change the time zone the admin's dates are shown and entered in."""
    if name not in available_timezones():
        raise AdminInvalid({"timezone": f"{name!r} is not a known time zone"})
    admin.timezone = name


def end_sessions(admin: Admin) -> None:
    """Invalidate every session of this admin, on every device."""
    admin.session_version += 1
    db.session.execute(delete(AdminSession).where(AdminSession.admin_id == admin.id))


def set_role(admin: Admin, role: str) -> None:
    """Give an admin another role; raise AdminInvalid rather than leave no owner."""
    try:
        new = AdminRole(role)
    except ValueError:
        raise AdminInvalid({"role": f"{role!r} is not owner, editor or viewer"}) from None
    if admin.role == AdminRole.OWNER and new != AdminRole.OWNER:
        owners = db.session.scalar(
            select(func.count()).select_from(Admin).where(Admin.role == AdminRole.OWNER)
        )
        if owners == 1:
            raise AdminInvalid({"role": f"{admin.email} is the last owner; make another first"})
    admin.role = new


def authenticate(email: str, password: str, now: datetime) -> Admin:
    """The admin these credentials belong to; raise SignInFailed otherwise, in similar time."""
    admin = find_admin(email)
    if admin is None:
        _password_matches(_dummy_hash(hasher()), password)
        raise SignInFailed
    if not _password_matches(admin.password_hash, password):
        raise SignInFailed
    if hasher().check_needs_rehash(admin.password_hash):
        admin.password_hash = hasher().hash(password)
    admin.last_login_at = now
    return admin


@bp.route("/sign-in", methods=["GET", "POST"])
@limiter.limit("5 per minute", methods=["POST"])
def sign_in() -> Response | str | tuple[str, int]:
    """The sign-in form; one message for any failure."""
    if current_user.is_authenticated:
        return redirect(url_for("admin.home"))
    email = request.form.get("email", "")
    if request.method == "POST":
        try:
            admin = authenticate(email, request.form.get("password", ""), utcnow())
        except SignInFailed:
            return render_template("admin/sign_in.html", email=email, error=SIGN_IN_FAILED), 401
        # A fresh session on sign-in: nothing from before (a planted cookie) carries over.
        session.clear()
        if admin.totp_secret:
            db.session.commit()
            # Not signed in yet: the second step needs a code, and this remembers whose.
            session[PENDING_SECOND_STEP] = {
                "admin": admin.id,
                "version": admin.session_version,
                "since": utcnow().timestamp(),
                "next": request.args.get("next", ""),
            }
            return redirect(url_for("admin.sign_in_code"))
        return finish_sign_in(admin, request.args.get("next"))
    return render_template("admin/sign_in.html", email=email, error=None)


def finish_sign_in(admin: Admin, next_path: str | None) -> Response:
    """Start a session for an admin who has proved who they are; commit; go on."""
    session.clear()
    login_user(start_session(admin, utcnow()))
    db.session.commit()
    return redirect(safe_next(next_path))


@bp.post("/sign-out")
def sign_out() -> Response:
    """Sign out of this browser only; the admin's other sessions go on."""
    end_session(current_user._get_current_object())
    db.session.commit()
    logout_user()
    session.clear()
    flash("You have signed out.")
    return redirect(url_for("admin.sign_in"))


@bp.post("/sign-out-everywhere")
def sign_out_everywhere() -> Response:
    """Sign out of every session of this account, on every device, this one included."""
    admin = db.session.get(Admin, current_user.id)
    assert admin is not None  # the user loader just found it
    end_sessions(admin)
    db.session.commit()
    logout_user()
    session.clear()
    flash("You have signed out everywhere.")
    return redirect(url_for("admin.sign_in"))


@bp.route("/account", methods=["GET", "POST"])
def account() -> Response | tuple[str, int]:
    """Change the signed-in admin's password; every other session ends."""
    errors: dict[str, str] = {}
    if request.method == "POST":
        admin = db.session.get(Admin, current_user.id)
        assert admin is not None  # the user loader just found it
        new = request.form.get("new_password", "")
        if not _password_matches(admin.password_hash, request.form.get("current_password", "")):
            errors["current_password"] = "is not your current password"
        elif new != request.form.get("confirm_password", ""):
            errors["confirm_password"] = "does not match the new password"
        else:
            try:
                set_password(admin, new)
            except AdminInvalid as exc:
                errors = {"new_password": exc.errors["password"]}
        if not errors:
            # This session continues under a new key; all others are now refused.
            session.clear()
            login_user(start_session(admin, utcnow()))
            db.session.commit()
            flash("Your password was changed. Other sessions have been signed out.")
            return redirect(url_for("admin.account"))
        return _account_page(errors, 400)
    return _account_page(errors, 200)


def _account_page(errors: dict[str, str], status: int) -> tuple[str, int]:
    """The account page with the password and time-zone forms."""
    zones = sorted(available_timezones())
    return render_template("admin/account.html", errors=errors, zones=zones), status


@bp.post("/account/timezone")
def account_timezone() -> Response | tuple[str, int]:
    """Change the signed-in admin's time zone."""
    admin = db.session.get(Admin, current_user.id)
    assert admin is not None  # the user loader just found it
    try:
        set_timezone(admin, request.form.get("timezone", ""))
    except AdminInvalid as exc:
        db.session.rollback()
        return _account_page(exc.errors, 400)
    db.session.commit()
    flash(f"Times are now shown in {admin.timezone}.")
    return redirect(url_for("admin.account"))


def _fail(exc: AdminInvalid) -> click.ClickException:
    """A command-line error from an account error."""
    return click.ClickException("; ".join(f"{k} {v}" for k, v in exc.errors.items()))


@click.command("create-admin")
@click.argument("email")
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    envvar="MAILER_ADMIN_PASSWORD",
    help="The password (else MAILER_ADMIN_PASSWORD, else asked twice).",
)
@click.option("--timezone", default="UTC", show_default=True, help="The admin's time zone.")
@click.option(
    "--role",
    type=click.Choice([r.value for r in AdminRole]),
    help="owner, editor or viewer (default: owner for the first admin, editor after).",
)
@with_appcontext
def create_admin_command(email: str, password: str, timezone: str, role: str | None) -> None:
    """Create an admin account that can sign in to /admin."""
    try:
        admin = create_admin(email, password, utcnow(), timezone, AdminRole(role) if role else None)
    except AdminInvalid as exc:
        db.session.rollback()
        raise _fail(exc) from None
    db.session.commit()
    click.echo(f"admin {admin.email} created ({admin.role})")


@click.command("set-admin-password")
@click.argument("email")
@click.option(
    "--password",
    prompt="New password",
    hide_input=True,
    confirmation_prompt=True,
    envvar="MAILER_ADMIN_PASSWORD",
    help="The new password (else MAILER_ADMIN_PASSWORD, else asked twice).",
)
@with_appcontext
def set_admin_password_command(email: str, password: str) -> None:
    """Change an admin's password; every session of that admin ends."""
    admin = find_admin(email)
    if admin is None:
        raise click.ClickException(f"no admin with the address {email}")
    try:
        set_password(admin, password)
    except AdminInvalid as exc:
        db.session.rollback()
        raise _fail(exc) from None
    db.session.commit()
    click.echo(f"password of {admin.email} changed; its sessions were signed out")


def init_app(app: Flask) -> None:
    """Bind Flask-Login and register the account commands."""
    login_manager.init_app(app)
    login_manager.login_view = "admin.sign_in"
    app.cli.add_command(create_admin_command)
    app.cli.add_command(set_admin_password_command)
