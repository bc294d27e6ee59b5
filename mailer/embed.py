"""The embedded-form endpoint: posts from other sites' forms, CORS for them, and embed.js."""

from __future__ import annotations

from flask import (
    Blueprint,
    Flask,
    Response,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from flask_babel import gettext as _
from sqlalchemy import select
from werkzeug.wrappers import Response as BaseResponse

from .consent import consent_from_request
from .embed_forms import (
    ANSWER,
    EmbedError,
    ForeignOrigin,
    InvalidFormKey,
    allowed_origin,
    embed_form_command,
    form_for_key,
    origin_of,
    return_url,
)
from .extensions import db
from .i18n import visitor_locale
from .models import EmbedForm, utcnow
from .paths import STATIC_DIR
from .subscribers import InvalidAddress, InvalidTopics, normalise_email, parse_topics, subscribe

bp = Blueprint("embed", __name__)


def _wants_json() -> bool:
    return request.accept_mimetypes.best_match(["text/html", "application/json"]) == (
        "application/json"
    )


def _refusal(message: str, status: int, back: str | None = None) -> Response:
    """A refused post: JSON for the script, else a plain page of ours."""
    if _wants_json():
        response = jsonify(ok=False, message=message)
        response.status_code = status
        return response
    page = render_template("embed/refused.html", message=message, back=back)
    return Response(page, status=status, mimetype="text/html")


def _verified_form() -> tuple[EmbedForm, str]:
    """The form a post names and the allowed origin it came from; raises the refusals."""
    form = form_for_key(request.form.get("form_key", ""))
    origin = allowed_origin(form, request.headers.get("Origin"), request.headers.get("Referer"))
    g.embed_cors_origin = origin
    return form, origin


def _page_url(form: EmbedForm) -> str:
    """The page the form was sent from: the script's note of it, else the Referer, else ''."""
    for candidate in (request.form.get("page_url", ""), request.referrer or ""):
        if candidate and origin_of(candidate) in form.origins:
            return candidate[:2000]
    return ""


def handle_embedded_subscribe() -> BaseResponse:
    """A post from an embedded form: key, origin, fields, honeypot, then the usual double opt-in."""
    try:
        form, _origin = _verified_form()
    except InvalidFormKey as exc:
        return _refusal(str(exc), 400)
    except ForeignOrigin as exc:
        return _refusal(str(exc), 403)
    back = return_url(form, request.referrer)
    topics = request.form.getlist("topics")
    try:
        normalise_email(request.form.get("email", ""))
        if not set(topics) <= set(form.topics):
            raise InvalidTopics(_("This form does not offer that choice."))
        parse_topics(topics)
    except (InvalidAddress, InvalidTopics) as exc:
        return _refusal(str(exc), 400, back)
    # A filled honeypot gets the same answer as everyone (bots learn nothing), and nothing is kept.
    if not request.form.get("website"):
        consent = consent_from_request(
            f"embed:{form.name}", form.consent_text, page_url=_page_url(form)
        )
        subscribe(
            request.form.get("email", ""),
            topics,
            consent,
            utcnow(),
            source=f"embed:{form.name}",
            locale=visitor_locale(),
        )
        db.session.commit()
    if _wants_json():
        return jsonify(ok=True, message=str(ANSWER))
    return redirect(back or url_for("subscriptions.check_inbox"), 303)


def _cors_origin() -> str | None:
    """The origin to name in CORS headers of this /subscribe response, if it is one we allow."""
    if "embed_cors_origin" in g:
        return str(g.embed_cors_origin)
    origin = request.headers.get("Origin")
    if not origin:
        return None
    if request.method == "OPTIONS":
        # A preflight carries no form key: any live form's origin may ask.
        live = db.session.scalars(select(EmbedForm).where(EmbedForm.revoked_at.is_(None)))
        return origin if any(origin in form.origins for form in live) else None
    if not request.form.get("form_key"):
        return None
    try:  # e.g. the 429 of the rate limiter, answered before the view ran
        return _verified_form()[1]
    except EmbedError:
        return None


def preflight() -> Response | None:
    """Answer a CORS preflight for /subscribe (before the app's automatic OPTIONS answer)."""
    if request.method != "OPTIONS" or request.path != "/subscribe":
        return None
    return Response(status=204)


def add_cors_headers(response: Response) -> Response:
    """Let the script on a form's own sites read our answer; nobody else."""
    if request.path != "/subscribe" or request.method not in ("POST", "OPTIONS"):
        return response
    response.vary.add("Origin")
    origin = _cors_origin()
    if origin is None:
        return response
    response.headers["Access-Control-Allow-Origin"] = origin
    if request.method == "OPTIONS":
        response.headers["Access-Control-Allow-Methods"] = "POST"
        response.headers["Access-Control-Allow-Headers"] = "Accept, Content-Type"
        response.headers["Access-Control-Max-Age"] = "600"
    return response


@bp.get("/embed.js")
def script() -> Response:
    """The small script that submits an embedded form in place."""
    response = send_from_directory(STATIC_DIR, "embed.js", max_age=3600)
    # Loaded by other sites' pages: it must not be blocked as a cross-origin resource.
    response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    return response


def init_app(app: Flask) -> None:
    """Register the script route, the CORS hooks and the `embed-form` command."""
    app.register_blueprint(bp)
    app.before_request(preflight)
    app.after_request(add_cors_headers)
    app.cli.add_command(embed_form_command)
