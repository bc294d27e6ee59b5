"""The WSGI apps the web benchmark serves with gunicorn: a bare Flask route, and the product."""

from __future__ import annotations

from flask import Flask

bare = Flask(__name__)


@bare.get("/")
def hello() -> str:
    """The least a Flask route can do: return a short page."""
    return "<!doctype html><title>bare</title><p>Hello</p>"


def product() -> Flask:
    """wsgi.py's app with rate limiting off, so one load generator can post many sign-ups."""
    from mailer import create_app

    return create_app({"RATELIMIT_ENABLED": False})
