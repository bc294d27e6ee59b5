"""The outbox viewer: with the file backend, the messages written, as their recipients see them."""

from __future__ import annotations

from flask import abort, render_template
from werkzeug.wrappers import Response

from ..outbox import (
    OutboxMessage,
    OutboxNotFound,
    list_outbox,
    outbox_directory,
    read_outbox_message,
)
from .base import bp
from .frames import framed_html

OUTBOX_SHOWN = 200


def _message_or_404(name: str) -> OutboxMessage:
    """One outbox message by file name, or a 404 (also when the backend is not the file one)."""
    directory = outbox_directory()
    if directory is None:
        abort(404)
    try:
        return read_outbox_message(directory, name)
    except OutboxNotFound:
        abort(404)


@bp.get("/outbox")
def outbox() -> str:
    """The newest messages written by the file backend, or a note about the backend in use."""
    directory = outbox_directory()
    entries = list_outbox(directory, OUTBOX_SHOWN) if directory is not None else []
    return render_template(
        "admin/outbox.html", directory=directory, entries=entries, shown=OUTBOX_SHOWN
    )


@bp.get("/outbox/<name>")
def outbox_message(name: str) -> str:
    """One written message: its headers, HTML part in a sandboxed frame and text part."""
    return render_template("admin/outbox_message.html", message=_message_or_404(name))


@bp.get("/outbox/<name>/html")
def outbox_message_html(name: str) -> Response:
    """One written message's HTML part, alone, for the sandboxed frame."""
    message = _message_or_404(name)
    if message.html is None:
        abort(404)
    return framed_html(message.html)
