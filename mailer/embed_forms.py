"""Embeddable forms: the forms other sites carry, their origins, signed keys, snippet, command."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from urllib.parse import urlsplit

import click
from flask import current_app, render_template
from flask.cli import with_appcontext
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import select

from .extensions import db
from .models import EmbedForm, utcnow
from .subscribers import CONSENT_TEXT, TOPIC_LABELS, InvalidTopics, Topic, parse_topics

FORM_KEY_SALT = "mailer.embed-form"
NAME_MAX = 100
# What the page that carried the form gets back after a post without script: this fragment, which
# the snippet's thank-you line answers to (``#mailer-subscribed:target``, or embed.js on load).
DONE_MARKER = "mailer-subscribed"
ANSWER = _l("Almost done: check your inbox and click the link in our e-mail to confirm.")


class EmbedError(Exception):
    """An embedded-form request or an embed-form definition cannot be accepted."""


class InvalidEmbedForm(EmbedError, ValueError):
    """A form definition is unusable (name, origin or topics); the message says why."""


class InvalidFormKey(EmbedError):
    """The form key is missing, tampered with, or names a form that is gone or revoked."""


class ForeignOrigin(EmbedError):
    """The post came from no origin, or from one the form does not allow."""


def normalise_origin(raw: str) -> str:
    """``scheme://host[:port]`` as browsers send it in ``Origin``; raise InvalidEmbedForm."""
    text = raw.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise InvalidEmbedForm(f"{raw!r} is not an origin like https://example.org.") from None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or parts.password is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise InvalidEmbedForm(
            f"{raw!r} is not an origin: give scheme and host only, like https://example.org."
        )
    default_port = 443 if parts.scheme == "https" else 80
    host = parts.hostname.lower()
    if ":" in host:  # an IPv6 address keeps its brackets
        host = f"[{host}]"
    suffix = f":{port}" if port is not None and port != default_port else ""
    return f"{parts.scheme}://{host}{suffix}"


def origin_of(url: str) -> str | None:
    """The origin of a URL (for a Referer), or None when it has none we can use."""
    try:
        parts = urlsplit(url)
        return normalise_origin(f"{parts.scheme}://{parts.netloc}")
    except (ValueError, InvalidEmbedForm):
        return None


def create_embed_form(
    name: str,
    origins: Iterable[str],
    topics: Iterable[str],
    consent_text: str,
    now: datetime,
) -> EmbedForm:
    """Define a named form with its origins, topics and consent text; raise InvalidEmbedForm."""
    name = name.strip()
    if not name or len(name) > NAME_MAX:
        raise InvalidEmbedForm(_("Give the form a name of 1 to %(max)s characters.", max=NAME_MAX))
    if db.session.scalar(select(EmbedForm.id).where(EmbedForm.name == name)) is not None:
        raise InvalidEmbedForm(f"A form named {name!r} already exists.")
    allowed = sorted({normalise_origin(o) for o in origins if o.strip()})
    if not allowed:
        raise InvalidEmbedForm(_("Give at least one origin the form may be placed on."))
    try:
        chosen = parse_topics(t.strip() for t in topics if t.strip())
    except InvalidTopics as exc:
        raise InvalidEmbedForm(str(exc)) from None
    consent_text = consent_text.strip()
    if not consent_text:
        raise InvalidEmbedForm(_("The consent text cannot be empty."))
    form = EmbedForm(
        name=name,
        origins=allowed,
        topics=[t.value for t in Topic if t in chosen],  # in the order the site shows them
        consent_text=consent_text,
        created_at=now,
    )
    db.session.add(form)
    db.session.flush()
    return form


def revoke_embed_form(form: EmbedForm, now: datetime) -> None:
    """Stop accepting posts from a form; revoking twice keeps the first date."""
    if form.revoked_at is None:
        form.revoked_at = now


def _serializer() -> URLSafeSerializer:
    config = current_app.config
    # Signed with the current key, accepted with the old ones too, like every other token.
    keys = [*config.get("SECRET_KEY_FALLBACKS", []), config["SECRET_KEY"]]
    return URLSafeSerializer(keys, salt=FORM_KEY_SALT)


def form_key(form: EmbedForm) -> str:
    """The signed key that identifies the form in its snippet (the name too: ids can be reused)."""
    return str(_serializer().dumps([form.id, form.name]))


def form_for_key(key: str) -> EmbedForm:
    """The live form a key identifies; raise InvalidFormKey otherwise."""
    try:
        payload = _serializer().loads(key)
    except BadSignature:
        raise InvalidFormKey(_("This form's key is not valid.")) from None
    if (
        not isinstance(payload, list)
        or len(payload) != 2
        or not isinstance(payload[0], int)
        or isinstance(payload[0], bool)
    ):
        raise InvalidFormKey(_("This form's key is not valid."))
    form = db.session.get(EmbedForm, payload[0])
    if form is None or form.name != payload[1]:
        raise InvalidFormKey(_("This form no longer exists."))
    if form.revoked_at is not None:
        raise InvalidFormKey(_("This form is no longer accepted."))
    return form


def allowed_origin(form: EmbedForm, origin: str | None, referer: str | None) -> str:
    """The allowed origin a request came from (``Origin``, else ``Referer``); else ForeignOrigin."""
    if origin:
        claimed = origin_of(origin) if origin != "null" else None
    else:
        claimed = origin_of(referer) if referer else None
    if claimed is None or claimed not in form.origins:
        raise ForeignOrigin(_("This form may not be used from this site."))
    return claimed


def return_url(form: EmbedForm, referer: str | None) -> str | None:
    """Where to send a visitor back after a post without script: the page, if the form allows it.

    Browsers send only the origin as Referer across sites unless the page asks for more; with
    no page named, the visitor gets our own "check your inbox" page rather than a home page
    that may not carry the form's thank-you line.
    """
    if not referer or origin_of(referer) not in form.origins:
        return None
    parts = urlsplit(referer)
    if parts.path in ("", "/") and not parts.query:
        return None
    return referer.split("#", 1)[0] + "#" + DONE_MARKER


def snippet(form: EmbedForm, base_url: str) -> str:
    """The HTML a site pastes into its pages: the form, and the optional script."""
    return render_template(
        "embed/snippet.html",
        form=form,
        key=form_key(form),
        base_url=base_url.rstrip("/"),
        marker=DONE_MARKER,
        answer=str(ANSWER),
        labels=TOPIC_LABELS,
    ).strip()


# --- The command -------------------------------------------------------------------------------


def _split(values: Iterable[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


@click.command("embed-form")
@click.argument("name")
@click.option(
    "--origin", "origins", multiple=True, required=True, help="A site the form may be placed on."
)
@click.option(
    "--topics",
    default=",".join(t.value for t in Topic),
    show_default=True,
    help="The topics it offers, comma-separated.",
)
@click.option("--consent-text", default=CONSENT_TEXT, help="The consent text it shows, verbatim.")
@with_appcontext
def embed_form_command(name: str, origins: tuple[str, ...], topics: str, consent_text: str) -> None:
    """Create an embeddable subscribe form and print its HTML snippet."""
    try:
        form = create_embed_form(name, _split(origins), _split([topics]), consent_text, utcnow())
    except InvalidEmbedForm as exc:
        raise click.UsageError(str(exc)) from None
    db.session.commit()
    click.echo(snippet(form, current_app.config["MAILER_BASE_URL"]))
