"""API tokens: list them with when each was last used, create one (shown once), revoke one."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from ..api_tokens import ApiTokenNameInvalid, create_api_token, list_api_tokens, revoke_api_token
from ..extensions import db
from ..models import ApiScope, ApiToken, utcnow
from .base import bp


def _page(errors: dict[str, str], name: str, plaintext: str | None, status: int) -> tuple[str, int]:
    """The tokens page, with the create form's error and a new token to show once."""
    page = render_template(
        "admin/api_tokens.html",
        tokens=list_api_tokens(),
        errors=errors,
        name=name,
        plaintext=plaintext,
        scopes=list(ApiScope),
    )
    return page, status


@bp.get("/api-tokens")
def api_tokens() -> tuple[str, int]:
    """Every API token, with when it was created, last used and revoked."""
    return _page({}, "", None, 200)


@bp.post("/api-tokens")
def api_token_create() -> tuple[str, int]:
    """Create a token and show its value this once: only its hash is kept."""
    name = request.form.get("name", "")
    try:
        scope = ApiScope(request.form.get("scope") or ApiScope.ADMIN)
    except ValueError:
        return _page({"scope": "is read, write or admin"}, name, None, 400)
    try:
        token, plaintext = create_api_token(name, utcnow(), scope)
    except ApiTokenNameInvalid as exc:
        db.session.rollback()
        return _page({"name": str(exc)}, name, None, 400)
    db.session.commit()
    flash(f"Token “{token.name}” created. Copy it now: it will not be shown again.")
    return _page({}, "", plaintext, 201)


@bp.post("/api-tokens/<int:token_id>/revoke")
def api_token_revoke(token_id: int) -> Response:
    """Stop a token from working."""
    token = db.get_or_404(ApiToken, token_id)
    revoke_api_token(token, utcnow())
    db.session.commit()
    flash(f"Token “{token.name}” revoked.")
    return redirect(url_for("admin.api_tokens"))
