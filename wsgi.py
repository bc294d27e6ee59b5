"""WSGI entry point: `gunicorn wsgi:app`."""

from mailer import create_app

app = create_app()
