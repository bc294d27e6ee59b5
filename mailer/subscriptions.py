"""Public blueprint: subscribe, confirm, unsubscribe (RFC 8058 one-click), preferences, privacy."""

from __future__ import annotations

import functools
import hashlib
import json
import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click
from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.cli import with_appcontext
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from werkzeug.exceptions import TooManyRequests
from werkzeug.wrappers import Response as BaseResponse
from wtforms import BooleanField, SelectMultipleField, StringField
from wtforms.validators import DataRequired, ValidationError

from . import embed
from .consent import consent_from_request
from .extensions import csrf, db, limiter
from .i18n import LANGUAGES, use_locale, visitor_locale
from .models import Subscriber, utcnow
from .subscribers import (
    CONSENT_TEXT,
    TOPIC_LABELS,
    AddressUnavailable,
    AddressUnchanged,
    InvalidAddress,
    InvalidTopics,
    NotPending,
    UnknownLanguage,
    change_language,
    confirm,
    confirm_address_change,
    erase,
    export_data,
    normalise_email,
    parse_topics,
    purge_unconfirmed,
    request_address_change,
    resend_for_link,
    subscribe,
    topics_of,
    unsubscribe,
    unsubscribe_target,
    update_preferences,
)
from .tokens import (
    EXAMPLE_TOKEN,
    ExpiredToken,
    ImpossibleId,
    InvalidToken,
    Purpose,
    make_token,
    subscriber_for,
)

bp = Blueprint("subscriptions", __name__)
ViewAnswer = TypeVar("ViewAnswer")


def _check_topics(field: SelectMultipleField) -> None:
    """The field's topics must be known, and at least one."""
    try:
        parse_topics(field.data or [])
    except InvalidTopics as exc:
        raise ValidationError(str(exc)) from None


def _check_address(field: StringField) -> None:
    """The field's address must pass the real validator."""
    try:
        normalise_email(field.data or "")
    except InvalidAddress as exc:
        raise ValidationError(str(exc)) from None


class SubscribeForm(FlaskForm):
    """The subscribe form: an address, the topics, and a honeypot for bots."""

    email = StringField("Email address")
    topics = SelectMultipleField("Topics", validate_choice=False)
    # Hidden from people; bots that fill every field give themselves away.
    website = StringField("Leave this empty")

    def validate_email(self, field: StringField) -> None:
        """The address must pass the real validator."""
        _check_address(field)

    def validate_topics(self, field: SelectMultipleField) -> None:
        """At least one known topic."""
        _check_topics(field)


class TopicsForm(FlaskForm):
    """The topics on the preferences page."""

    topics = SelectMultipleField("Topics", validate_choice=False)

    def validate_topics(self, field: SelectMultipleField) -> None:
        """At least one known topic; leaving everything is what unsubscribing is for."""
        _check_topics(field)


class LanguageForm(FlaskForm):
    """The language of the subscriber's pages and mail."""

    # Offered as a <select> of LANGUAGES by the template; checked here.
    locale = StringField(_l("Language"))

    def validate_locale(self, field: StringField) -> None:
        """One of the languages we write in."""
        if field.data not in LANGUAGES:
            raise ValidationError(_("Please choose one of the languages offered."))


class AddressForm(FlaskForm):
    """A new address for an address change."""

    new_email = StringField("New e-mail address")

    def validate_new_email(self, field: StringField) -> None:
        """The new address must pass the real validator."""
        _check_address(field)


class EraseForm(FlaskForm):
    """Erasure needs an explicit tick."""

    confirm = BooleanField(
        _l("I understand this deletes my subscription and data for good"),
        validators=[DataRequired(_l("Tick the box to confirm."))],
    )


class ButtonForm(FlaskForm):
    """A form that is only a button (and its CSRF token)."""


def _address_key() -> str:
    """Rate-limit key for the address typed into the form (hashed: keys may be logged)."""
    typed = request.form.get("email", "").strip().lower()
    return "address:" + hashlib.sha256(typed.encode()).hexdigest()


def _limit(name: str) -> Any:
    """A rate limit read from the app config at request time, so tests can tune it."""
    return lambda: str(current_app.config[name])


def invalid_link() -> tuple[str, int]:
    """The plain page for a tampered, wrong-purpose or dead link."""
    page = render_template(
        "subscriptions/message.html",
        title=_("This link is not valid"),
        message=_("This link is not valid. Please use the most recent e-mail we sent you."),
    )
    return page, 400


def _render_subscribe(form: SubscribeForm, status: int = 200) -> tuple[str, int]:
    return render_template("subscriptions/subscribe.html", form=form), status


@bp.get("/subscribe")
def subscribe_page() -> tuple[str, int]:
    """The subscribe form on a page of its own, for other pages to link to."""
    return _render_subscribe(SubscribeForm(formdata=None, topics=list(TOPIC_LABELS)))


@bp.post("/subscribe")
@csrf.exempt  # checked below, except for embedded forms: they prove their key and origin instead
@limiter.limit(_limit("MAILER_SUBSCRIBE_LIMIT_PER_IP"))
@limiter.limit(
    _limit("MAILER_SUBSCRIBE_LIMIT_PER_ADDRESS"),
    key_func=_address_key,
    scope="subscribe-address",
)
def subscribe_post() -> BaseResponse | tuple[str, int]:
    """Start double opt-in; every address, whatever its state, gets the same answer."""
    if request.form.get("form_key"):
        return embed.handle_embedded_subscribe()
    csrf.protect()
    # The token is checked just above; checking it again in the form would only sign it twice.
    form = SubscribeForm(meta={"csrf": False})
    if not form.validate():
        return _render_subscribe(form, 400)
    if not form.website.data:
        subscribe(
            form.email.data or "",
            form.topics.data or [],
            consent_from_request("web", _(CONSENT_TEXT)),
            utcnow(),
            locale=visitor_locale(),
        )
        db.session.commit()
    return redirect(url_for("subscriptions.check_inbox"), 303)


@bp.get("/subscribe/check-your-inbox")
def check_inbox() -> str:
    """The same page for every address: new, pending, confirmed, unsubscribed or suppressed."""
    return render_template("subscriptions/check_inbox.html")


@bp.get("/confirm/<token>")
def confirm_page(token: str) -> tuple[str, int] | str:
    """A page with a button: link scanners that open the link confirm nothing."""
    try:
        subscriber, _claims = subscriber_for(Purpose.CONFIRM, token)
    except ExpiredToken:
        return _expired_confirm(token)
    except InvalidToken:
        return invalid_link()
    use_locale(subscriber.locale)
    return render_template(
        "subscriptions/action.html",
        title=_("Confirm your subscription"),
        message=_("One click and you are on the list."),
        button=_("Yes, subscribe me"),
        form=ButtonForm(),
    )


def _expired_confirm(token: str) -> str:
    """The expired-link page: offers a fresh link and says nothing about the address."""
    return render_template(
        "subscriptions/action.html",
        title=_("This link has expired"),
        message=_("Confirmation links last a little while only. We can send you a fresh one."),
        button=_("Send me a fresh link"),
        action=url_for("subscriptions.resend", token=token),
        form=ButtonForm(),
    )


@bp.post("/confirm/<token>")
def confirm_post(token: str) -> tuple[str, int] | str:
    """Confirm; a second click shows the same success page and changes nothing."""
    if not ButtonForm().validate():
        return invalid_link()
    try:
        subscriber, _claims = subscriber_for(Purpose.CONFIRM, token)
        use_locale(subscriber.locale)
        confirm(subscriber, consent_from_request("confirm page"), utcnow())
    except ExpiredToken:
        return _expired_confirm(token)
    except (InvalidToken, NotPending):
        return invalid_link()
    db.session.commit()
    return render_template(
        "subscriptions/message.html",
        title=_("You are subscribed"),
        message=_("Thank you for confirming. A welcome e-mail is on its way."),
    )


@bp.post("/confirm/<token>/resend")
@limiter.limit(_limit("MAILER_RESEND_LIMIT_PER_IP"))
def resend(token: str) -> tuple[str, int] | str:
    """Send a fresh confirmation link if one is still needed; the answer never says which."""
    if not ButtonForm().validate():
        return invalid_link()
    try:
        resend_for_link(token, utcnow())
    except InvalidToken:
        return invalid_link()
    db.session.commit()
    return render_template(
        "subscriptions/message.html",
        title=_("Check your inbox"),
        message=_("If this address still needs confirming, a fresh link is on its way."),
    )


def _example_unsubscribe() -> str:
    """The answer to the unsubscribe link of a preview or a test send: a success that does
    nothing, so the test's one-click header works like the real one."""
    return render_template(
        "subscriptions/message.html",
        title=_("This is an example link"),
        message=_(
            "This link comes from a preview or a test send, so it unsubscribes nobody and "
            "nothing was changed. Every subscriber's e-mail carries a link of their own."
        ),
    )


@bp.get("/unsubscribe/<token>")
def unsubscribe_page(token: str) -> tuple[str, int] | str:
    """A page with a button; opening the link changes nothing."""
    if token == EXAMPLE_TOKEN:
        return _example_unsubscribe()
    try:
        subscriber = unsubscribe_target(token)
    except InvalidToken:
        return invalid_link()
    if subscriber is not None:
        use_locale(subscriber.locale)
    return render_template(
        "subscriptions/action.html",
        title=_("Unsubscribe"),
        message=_("You will get no more e-mail from us, starting now."),
        button=_("Unsubscribe me"),
        form=None,
    )


@bp.post("/unsubscribe/<token>")
@csrf.exempt  # RFC 8058: mail providers post with no cookies and no form token
def unsubscribe_post(token: str) -> tuple[str, int] | str:
    """Unsubscribe at once (the button, or a one-click POST); 200, no redirect, repeatable."""
    if token == EXAMPLE_TOKEN:
        return _example_unsubscribe()
    try:
        subscriber = unsubscribe_target(token)
    except InvalidToken:
        return invalid_link()
    if subscriber is not None:
        one_click = request.form.get("List-Unsubscribe") == "One-Click"
        unsubscribe(
            subscriber,
            utcnow(),
            consent_from_request("one-click" if one_click else "unsubscribe page"),
        )
        db.session.commit()
    return render_template("subscriptions/unsubscribed.html")


def _preferences(
    token: str, subscriber: Subscriber, status: int = 200, **forms: Any
) -> tuple[str, int]:
    """The preferences page with its four forms."""
    forms.setdefault("topics_form", TopicsForm(formdata=None, topics=topics_of(subscriber)))
    forms.setdefault("address_form", AddressForm(formdata=None))
    forms.setdefault("erase_form", EraseForm(formdata=None))
    forms.setdefault("export_form", ButtonForm(formdata=None))
    forms.setdefault("language_form", LanguageForm(formdata=None, locale=subscriber.locale))
    page = render_template(
        "subscriptions/preferences.html",
        token=token,
        subscriber=subscriber,
        unsubscribe_token=make_token(Purpose.UNSUBSCRIBE, subscriber),
        topic_labels=TOPIC_LABELS,
        **forms,
    )
    return page, status


def _preferences_link_problem(error: InvalidToken) -> tuple[str, int]:
    if isinstance(error, ExpiredToken):
        page = render_template(
            "subscriptions/message.html",
            title=_("This link has expired"),
            message=_("Every e-mail we send has a fresh link to your preferences."),
        )
        return page, 410
    if isinstance(error, ImpossibleId):
        return invalid_link()[0], 404  # no subscriber can ever have this link's id
    return invalid_link()


def _preferences_link(
    view: Callable[[str, Subscriber], ViewAnswer],
) -> Callable[[str], ViewAnswer | tuple[str, int]]:
    """Run a preferences view for the subscriber its link names, in their language; a bad or
    expired link gets its page instead."""

    @functools.wraps(view)
    def with_subscriber(token: str) -> ViewAnswer | tuple[str, int]:
        try:
            subscriber, _claims = subscriber_for(Purpose.PREFERENCES, token)
        except InvalidToken as error:
            return _preferences_link_problem(error)
        use_locale(subscriber.locale)
        return view(token, subscriber)

    return with_subscriber


@bp.get("/preferences/<token>")
@_preferences_link
def preferences(token: str, subscriber: Subscriber) -> tuple[str, int]:
    """Topics, address, a copy of my data, erase me."""
    return _preferences(token, subscriber)


@bp.post("/preferences/<token>")
@_preferences_link
def preferences_post(token: str, subscriber: Subscriber) -> BaseResponse | tuple[str, int]:
    """Save the topics."""
    form = TopicsForm()
    if not form.validate():
        return _preferences(token, subscriber, 400, topics_form=form)
    update_preferences(
        subscriber, form.topics.data or [], consent_from_request("preferences"), utcnow()
    )
    db.session.commit()
    flash(_("Your choices are saved."))
    return redirect(url_for("subscriptions.preferences", token=token), 303)


@bp.post("/preferences/<token>/language")
@_preferences_link
def change_language_post(token: str, subscriber: Subscriber) -> BaseResponse | tuple[str, int]:
    """Save the language of the subscriber's pages and mail."""
    form = LanguageForm()
    if not form.validate():
        return _preferences(token, subscriber, 400, language_form=form)
    try:
        change_language(
            subscriber, form.locale.data or "", consent_from_request("preferences"), utcnow()
        )
    except UnknownLanguage:  # the form checked it already; a race with nothing to lose
        return _preferences(token, subscriber, 400, language_form=form)
    db.session.commit()
    use_locale(subscriber.locale)
    flash(_("Your choices are saved."))
    return redirect(url_for("subscriptions.preferences", token=token), 303)


@bp.post("/preferences/<token>/address")
@_preferences_link
def change_address(token: str, subscriber: Subscriber) -> tuple[str, int]:
    """Ask the new address to confirm; the old one stays until it does."""
    form = AddressForm()
    if form.validate():
        try:
            request_address_change(
                subscriber, form.new_email.data or "", consent_from_request("preferences"), utcnow()
            )
        except AddressUnchanged as exc:
            form.new_email.errors = [str(exc)]
        else:
            db.session.commit()
            page = render_template(
                "subscriptions/message.html",
                title=_("Check the new inbox"),
                message=_(
                    "We sent a link to the new address. Your address changes once you "
                    "open it; until then everything goes to the current one."
                ),
            )
            return page, 200
    return _preferences(token, subscriber, 400, address_form=form)


@bp.post("/preferences/<token>/export")
@_preferences_link
def export(token: str, subscriber: Subscriber) -> Response | tuple[str, int]:
    """Everything we keep about the subscriber, as a JSON download."""
    if not ButtonForm().validate():
        return invalid_link()
    body = json.dumps(export_data(subscriber), indent=2, ensure_ascii=False)
    return Response(
        body,
        mimetype="application/json",
        headers={
            "Content-Disposition": 'attachment; filename="my-subscription-data.json"',
            "Cache-Control": "no-store",
        },
    )


@bp.post("/preferences/<token>/erase")
@_preferences_link
def erase_me(token: str, subscriber: Subscriber) -> tuple[str, int]:
    """Delete the subscriber's data for good, keeping only a hash so no import re-adds them."""
    form = EraseForm()
    if not form.validate():
        return _preferences(token, subscriber, 400, erase_form=form)
    erase(subscriber, utcnow())
    db.session.commit()
    page = render_template(
        "subscriptions/message.html",
        title=_("Your data is erased"),
        message=_(
            "We deleted your subscription and everything we knew about you. We kept only "
            "a one-way fingerprint of the address so that it is never added again by mistake."
        ),
    )
    return page, 200


@bp.get("/address/<token>")
def address_page(token: str) -> tuple[str, int] | str:
    """A page with a button to confirm the new address."""
    try:
        subscriber, _claims = subscriber_for(Purpose.ADDRESS, token)
        use_locale(subscriber.locale)
    except InvalidToken:
        return invalid_link()
    if subscriber.pending_email is None:
        return invalid_link()
    return render_template(
        "subscriptions/action.html",
        title=_("Confirm your new address"),
        message=_("From now on, send everything to %(address)s.", address=subscriber.pending_email),
        button=_("Yes, use this address"),
        form=ButtonForm(),
    )


@bp.post("/address/<token>")
def address_post(token: str) -> tuple[str, int]:
    """Switch to the new address and tell the old one."""
    if not ButtonForm().validate():
        return invalid_link()
    try:
        subscriber, _claims = subscriber_for(Purpose.ADDRESS, token)
        use_locale(subscriber.locale)
        new = confirm_address_change(subscriber, consent_from_request("address change"), utcnow())
    except InvalidToken:
        return invalid_link()
    except AddressUnavailable as exc:
        db.session.commit()  # the abandoned request is cleared
        page = render_template(
            "subscriptions/message.html", title=_("Nothing was changed"), message=str(exc)
        )
        return page, 409
    db.session.commit()
    page = render_template(
        "subscriptions/message.html",
        title=_("Your address is changed"),
        message=_("We will write to %(address)s from now on.", address=new),
    )
    return page, 200


@bp.errorhandler(429)
def too_many(error: TooManyRequests) -> Response:
    """A friendly page for a visitor who tried too often, with when to try again."""
    page = render_template("subscriptions/too_many.html")
    response = Response(page, status=429, mimetype="text/html")
    current = limiter.current_limit
    if current is not None:
        response.headers["Retry-After"] = str(max(1, math.ceil(current.reset_at - time.time())))
    return response


@click.command("purge-unconfirmed")
@with_appcontext
def purge_unconfirmed_command() -> None:
    """Delete addresses never confirmed within MAILER_PURGE_UNCONFIRMED_DAYS."""
    count = purge_unconfirmed(utcnow())
    db.session.commit()
    click.echo(f"Purged {count} unconfirmed address{'es' if count != 1 else ''}.")


def init_app(app: Flask) -> None:
    """Register the public subscription pages, the consent text and the purge command."""
    app.register_blueprint(bp)
    app.cli.add_command(purge_unconfirmed_command)
    app.context_processor(lambda: {"subscribe_consent_text": _(CONSENT_TEXT)})
