"""API tokens: create one (shown once), list, revoke, look one up and note its use; commands."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

import click
from flask.cli import AppGroup
from sqlalchemy import or_, select, update

from .extensions import db
from .models import ApiScope, ApiToken, utcnow

TOKEN_TAG = "mlr_"  # makes a leaked token recognisable to secret scanners and people
PREFIX_LENGTH = len(TOKEN_TAG) + 8
NAME_MAX = 100
# last_used_at is a hint, not an audit log: one write a minute per token is enough.
LAST_USED_GRANULARITY = timedelta(minutes=1)


class ApiTokenRefused(Exception):
    """A presented token is unknown or revoked; the message says which."""


class ApiTokenNameInvalid(ValueError):
    """A token name that cannot be stored."""


def hash_token(plaintext: str) -> str:
    """The stored form of a token: its SHA-256, hex (tokens are random, so no salt is needed)."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


def create_api_token(
    name: str, now: datetime, scope: ApiScope = ApiScope.ADMIN
) -> tuple[ApiToken, str]:
    """A new token named `name`; returns the row and the plaintext, which is never stored."""
    name = name.strip()
    if not name or len(name) > NAME_MAX or not name.isprintable():
        raise ApiTokenNameInvalid(f"a token name is 1 to {NAME_MAX} printable characters")
    plaintext = TOKEN_TAG + secrets.token_urlsafe(32)
    token = ApiToken(
        name=name,
        token_hash=hash_token(plaintext),
        prefix=plaintext[:PREFIX_LENGTH],
        created_at=now,
        scope=scope,
    )
    db.session.add(token)
    db.session.flush()
    return token, plaintext


def revoke_api_token(token: ApiToken, now: datetime) -> None:
    """Stop a token from working; revoking twice keeps the first time."""
    if token.revoked_at is None:
        token.revoked_at = now
    db.session.flush()


def list_api_tokens() -> list[ApiToken]:
    """Every token, oldest first."""
    return list(db.session.scalars(select(ApiToken).order_by(ApiToken.id)))


def use_api_token(plaintext: str, now: datetime) -> ApiToken:
    """The live token with this value; raise ApiTokenRefused otherwise.

    Records when the token was last used, at most once a minute (the caller commits).
    """
    token = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(plaintext)))
    if token is None:
        raise ApiTokenRefused("This API token is not valid.")
    if token.revoked_at is not None:
        raise ApiTokenRefused("This API token has been revoked.")
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_GRANULARITY:
        # Compare-and-set: concurrent requests of several workers write once, not each.
        db.session.execute(
            update(ApiToken)
            .where(
                ApiToken.id == token.id,
                or_(
                    ApiToken.last_used_at.is_(None),
                    ApiToken.last_used_at <= now - LAST_USED_GRANULARITY,
                ),
            )
            .values(last_used_at=now)
            .execution_options(synchronize_session=False)
        )
        db.session.refresh(token)
    return token


def _when(value: datetime | None) -> str:
    """A timestamp for the token table, or a dash."""
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "-"


api_token_cli = AppGroup("api-token", help="Create, list and revoke tokens of the JSON API.")


@api_token_cli.command("create")
@click.argument("name")
@click.option(
    "--scope",
    type=click.Choice([s.value for s in ApiScope]),
    default=ApiScope.ADMIN.value,
    show_default=True,
    help="read: GET only; write: also films and digests; admin: everything.",
)
def create_command(name: str, scope: str) -> None:
    """Create a token called NAME and print it (it is shown this once only)."""
    try:
        token, plaintext = create_api_token(name, utcnow(), ApiScope(scope))
    except ApiTokenNameInvalid as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from None
    db.session.commit()
    click.echo(plaintext)
    click.echo(
        f"token {token.id} ({token.name!r}, scope {token.scope}, prefix {token.prefix}) created; "
        "store it now, it cannot be shown again",
        err=True,
    )


@api_token_cli.command("list")
def list_command() -> None:
    """List tokens: id, name, scope, prefix, created, last used, revoked."""
    rows = [("id", "name", "scope", "prefix", "created", "last used", "revoked")]
    rows += [
        (
            str(t.id),
            t.name,
            t.scope,
            t.prefix,
            _when(t.created_at),
            _when(t.last_used_at),
            _when(t.revoked_at),
        )
        for t in list_api_tokens()
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


@api_token_cli.command("revoke")
@click.argument("token_id", type=int)
def revoke_command(token_id: int) -> None:
    """Revoke the token with id TOKEN_ID; requests using it get 401 from now on."""
    token = db.session.get(ApiToken, token_id)
    if token is None:
        raise click.ClickException(f"no API token with id {token_id}")
    revoke_api_token(token, utcnow())
    db.session.commit()
    click.echo(f"token {token.id} ({token.name!r}) revoked")
