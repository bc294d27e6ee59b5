"""The outbox: messages the file backend wrote, listed newest first and read back safely."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from flask import Flask

from mailer.backends import backend_from_url
from mailer.models import DeliveryKind
from mailer.outbox import OutboxNotFound, list_outbox, outbox_directory, read_outbox_message
from tests.factories import World, render


def test_lists_newest_first_and_reads_back(
    app: Flask,
    world: World,
    tmp_path: Path,
) -> None:
    outbox = tmp_path / "outbox"
    kinds = [DeliveryKind.CONFIRMATION, DeliveryKind.DIGEST, DeliveryKind.EARLY_ACCESS]
    with backend_from_url(f"file://{outbox}") as backend:
        for kind in kinds:
            backend.send(render(kind, world))
    # Make the order unambiguous whatever the file system's time resolution.
    for age, name in enumerate(sorted(os.listdir(outbox), reverse=True)):
        os.utime(outbox / name, ns=(10**18 - age * 10**9, 10**18 - age * 10**9))
    (outbox / "notes.txt").write_text("not a message")
    entries = list_outbox(outbox)
    assert [e.subject for e in entries] == [
        "Early access: The Early Film",
        "Three films this week",
        "Please confirm your subscription",
    ]
    assert all(e.to == world.fan.email and e.size > 1000 and e.date for e in entries)
    assert len(list_outbox(outbox, limit=2)) == 2
    message = read_outbox_message(outbox, entries[1].name)
    assert message.subject == "Three films this week"
    assert message.to == world.fan.email
    assert message.from_ == "Documentaries <newsletter@localhost>"
    assert message.html and "<h1" in message.html
    assert message.text and "Unsubscribe: http://localhost/unsubscribe/" in message.text
    assert ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click") in message.headers


@pytest.mark.parametrize(
    "name",
    ["../secret.eml", "..", "notes.txt", "/etc/passwd", "a/b.eml", ".hidden.eml", "x.eml\x00"],
)
def test_refuses_anything_but_an_eml_in_the_folder(tmp_path: Path, name: str) -> None:
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    (tmp_path / "secret.eml").write_bytes(b"Subject: secret\r\n\r\nx\r\n")
    (outbox / "notes.txt").write_text("x")
    with pytest.raises(OutboxNotFound):
        read_outbox_message(outbox, name)


def test_missing_message_and_folder(tmp_path: Path) -> None:
    with pytest.raises(OutboxNotFound):
        read_outbox_message(tmp_path, "nothing.eml")
    assert list_outbox(tmp_path / "absent") == []


def test_outbox_directory_only_for_the_file_backend(app: Flask, tmp_path: Path) -> None:
    with app.app_context():
        assert outbox_directory() is None  # the tests run on memory://
        app.extensions["mailer.backend"] = backend_from_url(f"file://{tmp_path}")
        assert outbox_directory() == tmp_path
