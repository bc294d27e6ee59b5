"""Languages: which one a page or a mail is in, and where the translations are."""

from __future__ import annotations

from flask import Flask, g, has_request_context, request
from flask_babel import Babel, refresh

from .paths import TRANSLATIONS_DIR

DEFAULT_LOCALE = "en"
# Every language the pages and mails exist in, named in itself for the language menu.
LANGUAGES = {"en": "English", "de": "Deutsch"}
SUPPORTED = tuple(LANGUAGES)

babel = Babel()


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
    app.context_processor(lambda: {"languages": LANGUAGES})
