"""The console, file and memory backends, and backends added by other packages."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from mailer.backends import Message, backend_from_url
from mailer.backends.console import ConsoleBackend
from mailer.backends.file import FileBackend
from mailer.backends.memory import MemoryBackend
from mailer.config import ConfigError

DATA = (
    b"From: news@example.org\r\nTo: reader@example.org\r\nSubject: Hello\r\n"
    b"Message-ID: <../../evil id@example.org>\r\nContent-Type: text/plain\r\n\r\nBody text\r\n"
)


def message() -> Message:
    return Message("news@example.org", ("reader@example.org",), DATA, "<../../evil id@example.org>")


def test_file_backend_writes_safe_names_and_never_overwrites(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    backend = backend_from_url(f"file://{outbox}")
    assert isinstance(backend, FileBackend)
    with backend:
        for _ in range(3):
            backend.send(message())
    files = sorted(outbox.iterdir())
    assert len(files) == 3
    for path in files:
        assert path.parent == outbox and path.suffix == ".eml"
        assert "/" not in path.name and ".." not in path.name.replace(".eml", "")
        assert path.read_bytes() == DATA
    assert not list(tmp_path.glob("*.eml"))


def test_console_backend_prints_a_summary() -> None:
    out = io.StringIO()
    with ConsoleBackend(out) as backend:
        backend.send(message())
    printed = out.getvalue()
    assert "Subject: Hello" in printed and "To: reader@example.org" in printed
    assert "Body text" in printed


def test_memory_backend_keeps_messages() -> None:
    backend = backend_from_url("memory://")
    assert isinstance(backend, MemoryBackend)
    with backend:
        backend.send(message())
    assert backend.outbox == [message()]


def test_unknown_scheme_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown scheme 'carrier-pigeon'.*smtp://"):
        backend_from_url("carrier-pigeon://coop")


def test_other_packages_add_backends_by_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real (tiny) installed distribution declaring a `mailer.backends` entry point.
    (tmp_path / "pigeon_backend.py").write_text(
        "from mailer.backends.memory import MemoryBackend\n"
        "class PigeonBackend(MemoryBackend):\n"
        "    @classmethod\n"
        "    def from_url(cls, url):\n"
        "        backend = cls()\n"
        "        backend.url = url\n"
        "        return backend\n"
    )
    dist = tmp_path / "pigeon_backend-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: pigeon-backend\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[mailer.backends]\npigeon = pigeon_backend:PigeonBackend.from_url\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    backend = backend_from_url("pigeon://coop?rings=3")
    assert type(backend).__name__ == "PigeonBackend"
    assert backend.url == "pigeon://coop?rings=3"  # type: ignore[attr-defined]
    with backend:
        backend.send(message())
    assert backend.outbox == [message()]  # type: ignore[attr-defined]
