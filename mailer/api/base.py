"""What every API resource shares: bearer authentication, JSON-only bodies, size and rate limits."""

from __future__ import annotations

from typing import TypeVar

from flask import current_app, g, request
from flask_limiter.util import get_remote_address
from flask_smorest import Blueprint
from webargs.flaskparser import abort
from werkzeug.exceptions import HTTPException

from ..api_tokens import hash_token
from ..extensions import csrf, db, limiter
from ..models import ApiToken, utcnow
from ..security import NUL_MESSAGE, request_fields_with_nul, unstorable_fields
from . import errors
from .scopes import scope_allows, scope_needed
from .tokens import InvalidApiToken, authenticate, bearer_value

T = TypeVar("T")

PREFIX = errors.PREFIX
REALM = 'Bearer realm="mailer API"'
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def rate_limit_key() -> str:
    """Rate limits count per presented token (a hash of it), else per client address."""
    presented = bearer_value(request.headers.get("Authorization"))
    if presented:
        return "api-token:" + hash_token(presented)[:32]
    return "api-ip:" + (get_remote_address() or "unknown")


def rate_limit() -> str:
    """The configured per-token limit, e.g. '300 per minute'."""
    return str(current_app.config["MAILER_API_RATE_LIMIT"])


def current_token() -> ApiToken:
    """The token that authenticated this request."""
    token: ApiToken = g.api_token
    return token


def get_or_404(model: type[T], ident: int, noun: str, *, lock: bool = False) -> T:
    """The row of `model` with this id (locked for update if asked), or a 404 naming the noun."""
    row = db.session.get(model, ident, with_for_update=lock)
    if row is None:
        abort(404, message=f"There is no {noun} with id {ident}.")
    return row


def _guard_request() -> None:
    """Size limit, then bearer authentication and its scope, then JSON-only bodies."""
    request.max_content_length = current_app.config["MAILER_API_MAX_BODY"]
    if request.method == "OPTIONS":
        return
    try:
        token = authenticate(request.headers.get("Authorization"), utcnow())
    except InvalidApiToken as exc:
        db.session.rollback()
        challenge = REALM + (', error="invalid_token"' if exc.presented else "")
        abort(401, message=str(exc), headers={"WWW-Authenticate": challenge})
    # authenticate() may have recorded last use; keep that write short and separate.
    db.session.commit()
    g.api_token = token
    if not scope_allows(token.scope, request.endpoint or "", request.method):
        needed = scope_needed(request.endpoint or "", request.method)
        abort(403, message=f"This token's scope is {token.scope}; this request needs {needed}.")
    if request.method in BODY_METHODS and _has_body() and not request.is_json:
        abort(415)
    _refuse_unstorable_text()


def _refuse_unstorable_text() -> None:
    """Refuse NUL bytes and unpaired surrogates in any value, naming the fields, before any
    query: PostgreSQL text cannot store them."""
    errors = {field: [NUL_MESSAGE] for field in request_fields_with_nul()}
    if request.is_json:
        for field, problem in unstorable_fields(request.get_json(silent=True)):
            errors.setdefault(field, []).append(problem)
    if errors:
        abort(422, errors={field: sorted(set(problems)) for field, problems in errors.items()})


def _has_body() -> bool:
    """Whether the request announces a body."""
    return bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "")


def make_blueprint(name: str, path: str, description: str) -> Blueprint:
    """A resource blueprint under the API prefix with the shared guards and error handlers."""
    bp = Blueprint(name, __name__, url_prefix=PREFIX + path, description=description)
    bp.before_request(_guard_request)
    bp.register_error_handler(HTTPException, errors.handle_http_exception)
    bp.register_error_handler(Exception, errors.handle_unexpected)
    csrf.exempt(bp)  # bearer tokens, no cookies: nothing for a cross-site form to ride on
    limiter.limit(rate_limit, key_func=rate_limit_key)(bp)
    return bp
