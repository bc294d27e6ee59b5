"""`mailer bounces fetch` from a real IMAP server (pymap), over TLS and over STARTTLS."""

import asyncio
import contextlib
import imaplib
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trustme
from flask import Flask
from sqlalchemy import func, select

from mailer.extensions import db
from mailer.models import Bounce, Delivery, DeliveryKind, DeliveryStatus, Suppression
from mailer.verp import verp_address
from tests.factories import add_subscribers, emails_of

BIN = Path(sys.executable).parent
CORPUS = Path(__file__).parent / "data" / "bounces"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
USER, PASSWORD = "bounces", "s3cret pass"
REPORTS = ["postfix_user_unknown.eml", "yahoo_arf.eml"]  # a hard bounce (DSN) and a complaint (ARF)


@dataclass
class ImapServer:
    """pymap taking STARTTLS on one port, and implicit TLS (through a TLS front) on another."""

    starttls_port: int
    tls_port: int
    ca_file: Path
    context: ssl.SSLContext

    def client(self) -> imaplib.IMAP4:
        """A signed-in client of the test's own, to put mail in and look at flags."""
        conn = imaplib.IMAP4("127.0.0.1", self.starttls_port, timeout=10)
        conn.starttls(ssl_context=self.context)
        conn.login(USER, PASSWORD)
        conn.select("INBOX")
        return conn


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _tls_front(cert: trustme.LeafCert, backend_port: int) -> Iterator[int]:
    """Terminate implicit TLS (imaps) on a port of its own and relay the bytes to pymap."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_context)
    loop = asyncio.new_event_loop()
    port = _free_port()
    writers: list[asyncio.StreamWriter] = []

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        back_reader, back_writer = await asyncio.open_connection("127.0.0.1", backend_port)
        writers.extend([writer, back_writer])
        await asyncio.gather(relay(reader, back_writer), relay(back_reader, writer))

    # The loop runs in a thread of its own from the start: the main thread may already run one
    # (the browser tests' Playwright does), and a second would refuse to start there.
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(
        asyncio.start_server(accept, "127.0.0.1", port, ssl=server_context), loop
    ).result(10)
    try:
        yield port
    finally:

        async def shut() -> None:
            server.close()
            for writer in writers:
                writer.close()
            await server.wait_closed()

        asyncio.run_coroutine_threadsafe(shut(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture
def imap_server(tmp_path: Path) -> Iterator[ImapServer]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    port = _free_port()
    proc = subprocess.Popen(
        [BIN / "pymap", "--host", "127.0.0.1", "--port", str(port),
         "--cert", tmp_path / "cert.pem", "--key", tmp_path / "key.pem",
         "dict", "--demo-user", USER, "--demo-password", PASSWORD],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            break
        assert proc.poll() is None and time.monotonic() < deadline, "pymap did not start"
        time.sleep(0.1)
    context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    try:
        with _tls_front(cert, port) as tls_port:
            yield ImapServer(port, tls_port, tmp_path / "ca.pem", context)
    finally:
        proc.terminate()
        proc.wait(10)


def _deliveries(app: Flask) -> list[tuple[int, str]]:
    """Two sent deliveries; return each (subscriber id, report made for it) from the corpus."""
    app.config["MAILER_BOUNCE_ADDRESS"] = "bounces@news.example.org"
    made = []
    with app.app_context():
        readers = add_subscribers(len(REPORTS), now=NOW)
        for number, (reader, name) in enumerate(zip(readers, REPORTS, strict=True)):
            message_id = f"<m{number}@news.example.org>"
            delivery = Delivery(
                kind=DeliveryKind.DIGEST, subscriber_id=reader, status=DeliveryStatus.SENT,
                message_id=message_id, next_attempt_at=NOW, created_at=NOW,
            )  # fmt: skip
            db.session.add(delivery)
            db.session.commit()
            raw = (CORPUS / name).read_text()
            made.append((reader, raw.format(verp=verp_address(delivery.id), message_id=message_id)))
    return made


def _fetch(url: str, env: dict[str, str], server: ImapServer) -> subprocess.CompletedProcess[str]:
    """Run the real `mailer bounces fetch`, trusting the test CA as a system CA would be."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    return subprocess.run(
        [BIN / "mailer", "bounces", "fetch", "--mailbox", url],
        env={**clean, **env, "MAILER_BOUNCE_ADDRESS": "bounces@news.example.org",
             "SSL_CERT_FILE": str(server.ca_file)},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("scheme", ["imaps", "imap"])
def test_imap_fetched_twice_counts_once(
    scheme: str, app: Flask, test_env: dict[str, str], imap_server: ImapServer
) -> None:
    made = _deliveries(app)
    conn = imap_server.client()
    chatter = "From: someone@example.org\r\nSubject: hi\r\n\r\nnot a bounce\r\n"
    for raw in [raw for _reader, raw in made] + [chatter]:
        conn.append("INBOX", None, None, raw.encode())
    port = imap_server.tls_port if scheme == "imaps" else imap_server.starttls_port
    url = f"{scheme}://{USER}:s3cret%20pass@127.0.0.1:{port}/INBOX"

    first = _fetch(url, test_env, imap_server)
    assert first.returncode == 0, first.stderr
    assert "3 new reports, 2 bounces recorded" in first.stdout
    _, unseen = conn.uid("SEARCH", "UNSEEN")
    assert unseen == [b""]  # every message was flagged seen
    # Put them all back unseen (a crash before they were flagged): still nothing counts twice.
    conn.store("1:*", "-FLAGS", "(\\Seen)")
    again = _fetch(url, test_env, imap_server)
    assert again.returncode == 0, again.stderr
    assert "0 new reports, 0 bounces recorded" in again.stdout
    conn.logout()
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Bounce)) == 2
        suppressed = db.session.execute(select(Suppression.email, Suppression.reason)).all()
        assert sorted(reason for _email, reason in suppressed) == ["complaint", "hard_bounce"]
        assert {email for email, _reason in suppressed} == emails_of([r for r, _ in made])


def test_a_wrong_password_is_one_clear_line(
    test_env: dict[str, str], imap_server: ImapServer
) -> None:
    url = f"imaps://{USER}:wrong@127.0.0.1:{imap_server.tls_port}/INBOX"
    result = _fetch(url, test_env, imap_server)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "MAILER_BOUNCE_MAILBOX: cannot sign in to 127.0.0.1" in lines[0]
