"""Languages: which one a page or a mail is in, and where the translations are."""

from __future__ import annotations

from flask import Flask, g, has_request_context, request
from flask_babel import (
    Babel,
    format_date,
    format_datetime,
    format_decimal,
    format_percent,
    get_locale,
    refresh,
)

from .paths import TRANSLATIONS_DIR

DEFAULT_LOCALE = "en"
# Every language the pages and mails exist in, named in itself for the language menu.
LANGUAGES = {"en": "English", "de": "Deutsch"}
SUPPORTED = tuple(LANGUAGES)

babel = Babel()


def N_(message: str) -> str:
    """Mark ``message`` for the catalogue; it is translated where it is shown (gettext)."""
    return message


def supported(locale: str | None) -> str:
    """``locale`` if we speak it, else the default (a stored value from before is never fatal)."""
    return locale if locale in LANGUAGES else DEFAULT_LOCALE


def visitor_locale() -> str:
    """The visitor's best language by their Accept-Language header, else the default."""
    if not has_request_context():
        return DEFAULT_LOCALE
    return request.accept_languages.best_match(SUPPORTED) or DEFAULT_LOCALE


def use_locale(locale: str) -> None:
    """Speak ``locale`` for the rest of this request (a subscriber's own pages)."""
    g.mailer_locale = supported(locale)
    refresh()


def select_locale() -> str:
    """The request's language: a choice made for it, the API's English, or the visitor's."""
    chosen = g.get("mailer_locale")
    if chosen:
        return str(chosen)
    # The API speaks to programs: its messages stay English whatever the client asks for.
    if has_request_context() and request.blueprint == "api":
        return DEFAULT_LOCALE
    return visitor_locale()


def init_app(app: Flask) -> None:
    """Bind Flask-Babel: the locale selector, the catalogues, Jinja's ``_`` and ``{% trans %}``."""
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(TRANSLATIONS_DIR))
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT_LOCALE)
    babel.init_app(app, locale_selector=select_locale)
    # {% trans %} blocks keep their words on one line in the catalogue, however they are wrapped.
    app.jinja_env.policies["ext.i18n.trimmed"] = True
    app.context_processor(_template_context)
    # Dates and numbers shown to people are written the way their language writes them.
    app.jinja_env.globals.update(
        format_date=format_date,
        format_datetime=format_datetime,
        format_decimal=format_decimal,
        format_percent=format_percent,
    )


def _template_context() -> dict[str, object]:
    """The language menu, and the language being spoken (for <html lang>)."""
    return {"languages": LANGUAGES, "current_locale": current_locale()}


def current_locale() -> str:
    """The language this page or mail is in."""
    locale = get_locale()
    return locale.language if locale is not None else DEFAULT_LOCALE
