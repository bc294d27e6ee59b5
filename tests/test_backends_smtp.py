"""The SMTP backend against a real aiosmtpd server: replies land in the right failure class."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from aiosmtpd.smtp import AuthResult, LoginPassword

from mailer.backends import (
    Message,
    PermanentFailure,
    SenderMisconfigured,
    TemporaryFailure,
    backend_from_url,
)
from mailer.backends.smtp import SMTPBackend
from tests.smtp_server import ScriptedSMTPServer


def message(to: str = "reader@example.org", body: str = "hello") -> Message:
    """A small, valid message."""
    data = (
        f"From: news@example.org\r\nTo: {to}\r\nSubject: hi\r\n"
        f"Message-ID: <1@example.org>\r\n\r\n{body}\r\n"
    ).encode()
    return Message("news@example.org", (to,), data, "<1@example.org>")


@pytest.fixture
def server() -> Iterator[ScriptedSMTPServer]:
    srv = ScriptedSMTPServer(enable_SMTPUTF8=True).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    """A server context with a certificate for 127.0.0.1 signed by the test CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


def test_delivers_and_reuses_one_connection(server: ScriptedSMTPServer) -> None:
    with backend_from_url(server.url) as backend:
        for n in range(3):
            backend.send(message(f"r{n}@example.org"))
    got = server.wait_for(3)
    assert [r.rcpt_tos for r in got] == [[f"r{n}@example.org"] for n in range(3)]
    assert len({r.peer for r in got}) == 1, "all three over one connection"
    assert got[0].mail_from == "news@example.org"


def test_envelope_sender_from_url(server: ScriptedSMTPServer) -> None:
    with backend_from_url(f"{server.url}?envelope_from=bounces@example.org") as backend:
        backend.send(message())
    (got,) = server.wait_for(1)
    assert got.mail_from == "bounces@example.org"
    assert got.message["From"] == "news@example.org"


def test_451_is_temporary(server: ScriptedSMTPServer) -> None:
    server.answer("later@example.org", "451 4.3.0 try again later")
    with backend_from_url(server.url) as backend:
        with pytest.raises(TemporaryFailure) as caught:
            backend.send(message("later@example.org"))
        backend.send(message("fine@example.org"))  # the session survives a refusal
    assert caught.value.smtp_code == 451
    assert caught.value.enhanced_status == "4.3.0"
    assert [r.rcpt_tos for r in server.wait_for(1)] == [["fine@example.org"]]


def test_550_511_is_permanent(server: ScriptedSMTPServer) -> None:
    server.answer("gone@example.org", "550 5.1.1 no such user")
    with backend_from_url(server.url) as backend, pytest.raises(PermanentFailure) as caught:
        backend.send(message("gone@example.org"))
    assert type(caught.value) is PermanentFailure
    assert (caught.value.smtp_code, caught.value.enhanced_status) == (550, "5.1.1")


def test_550_5726_dmarc_is_our_misconfiguration(server: ScriptedSMTPServer) -> None:
    server.answer("strict@example.org", "550 5.7.26 unauthenticated mail is prohibited")
    with backend_from_url(server.url) as backend, pytest.raises(SenderMisconfigured) as caught:
        backend.send(message("strict@example.org"))
    assert (caught.value.smtp_code, caught.value.enhanced_status) == (550, "5.7.26")


def test_drop_after_final_dot_is_temporary_and_session_recovers(
    server: ScriptedSMTPServer,
) -> None:
    server.answer("drop@example.org", "drop")
    with backend_from_url(server.url) as backend:
        with pytest.raises(TemporaryFailure):
            backend.send(message("drop@example.org"))
        backend.send(message("next@example.org"))
    assert [r.rcpt_tos for r in server.wait_for(1)] == [["next@example.org"]]


def test_reconnects_after_idle_drop(server: ScriptedSMTPServer) -> None:
    server.answer("first@example.org", "close")
    with backend_from_url(server.url) as backend:
        backend.send(message("first@example.org"))
        backend.send(message("second@example.org"))
    got = server.wait_for(2)
    assert [r.rcpt_tos for r in got] == [["first@example.org"], ["second@example.org"]]
    assert got[0].peer != got[1].peer


def test_reconnects_after_the_server_timed_the_session_out() -> None:
    srv = ScriptedSMTPServer(timeout=0.2).start()
    try:
        with backend_from_url(srv.url) as backend:
            backend.send(message("first@example.org"))
            time.sleep(1.5)  # well past the server's idle time-out
            backend.send(message("second@example.org"))
        got = srv.wait_for(2)
        assert [r.rcpt_tos for r in got] == [["first@example.org"], ["second@example.org"]]
        assert got[0].peer != got[1].peer  # the second went over a new connection
    finally:
        srv.stop()


def test_time_out_is_temporary(server: ScriptedSMTPServer) -> None:
    server.answer("slow@example.org", "hang")
    with (
        backend_from_url(f"{server.url}?timeout=0.5") as backend,
        pytest.raises(TemporaryFailure),
    ):
        backend.send(message("slow@example.org"))


def test_unreachable_server_is_temporary() -> None:
    from tests.smtp_server import free_port

    with pytest.raises(TemporaryFailure), backend_from_url(f"smtp://127.0.0.1:{free_port()}"):
        pass


def test_smtputf8_when_offered(server: ScriptedSMTPServer) -> None:
    with backend_from_url(server.url) as backend:
        backend.send(message("jörg@exämple.org", body="grüße"))
    (got,) = server.wait_for(1)
    assert got.rcpt_tos == ["jörg@exämple.org"]
    assert "SMTPUTF8" in got.mail_options


def test_no_smtputf8_offered_is_permanent_for_that_address() -> None:
    srv = ScriptedSMTPServer(enable_SMTPUTF8=False).start()
    try:
        with backend_from_url(srv.url) as backend:
            with pytest.raises(PermanentFailure):
                backend.send(message("jörg@example.org"))
            backend.send(message("plain@example.org"))
        assert len(srv.wait_for(1)) == 1
    finally:
        srv.stop()


def test_starttls_with_authentication(ca: trustme.CA, ca_file: Path) -> None:
    def authenticator(
        server: object, session: object, envelope: object, mechanism: str, data: object
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"u", b"p w")
        return AuthResult(success=ok, handled=False)

    srv = ScriptedSMTPServer(
        tls_context=server_tls(ca),
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
    ).start()
    try:
        url = f"smtp://u:p%20w@127.0.0.1:{srv.port}?starttls=true&cafile={ca_file}&timeout=3"
        with backend_from_url(url) as backend:
            backend.send(message())
        assert len(srv.wait_for(1)) == 1
        bad = f"smtp://u:wrong@127.0.0.1:{srv.port}?starttls=true&cafile={ca_file}&timeout=3"
        with pytest.raises(SenderMisconfigured), backend_from_url(bad):
            pass
        untrusted = f"smtp://u:p%20w@127.0.0.1:{srv.port}?starttls=true"
        with pytest.raises(SenderMisconfigured), backend_from_url(untrusted):
            pass
    finally:
        srv.stop()


def test_starttls_required_but_not_offered(server: ScriptedSMTPServer) -> None:
    with pytest.raises(SenderMisconfigured), backend_from_url(f"{server.url}?starttls=true"):
        pass


def test_implicit_tls(ca: trustme.CA, ca_file: Path) -> None:
    srv = ScriptedSMTPServer(ssl_context=server_tls(ca)).start()
    try:
        backend = backend_from_url(f"smtps://127.0.0.1:{srv.port}?cafile={ca_file}")
        assert isinstance(backend, SMTPBackend) and backend.implicit_tls
        with backend:
            backend.send(message())
        assert len(srv.wait_for(1)) == 1
    finally:
        srv.stop()


def test_url_options() -> None:
    backend = backend_from_url("smtp://a%40b:s%3Ac@mail.example.org:587?starttls=yes&timeout=5")
    assert isinstance(backend, SMTPBackend)
    assert (backend.host, backend.port, backend.starttls) == ("mail.example.org", 587, True)
    assert (backend.username, backend.password, backend.timeout) == ("a@b", "s:c", 5.0)
    assert backend_from_url("smtps://mail.example.org").port == 465  # type: ignore[attr-defined]


@pytest.mark.parametrize("pipelining", [True, False])
def test_replies_stay_in_step_over_one_connection(
    pipelining: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pipelined (one write for MAIL, RCPT and DATA) or not, each message gets its own reply."""
    srv = ScriptedSMTPServer(pipelining=pipelining).start()
    pipelined: list[str] = []
    original = SMTPBackend._pipelined

    def spy(self: SMTPBackend, sender: str, msg: Message) -> None:
        pipelined.append(msg.recipients[0])
        original(self, sender, msg)

    monkeypatch.setattr(SMTPBackend, "_pipelined", spy)
    srv.answer("busy@example.org", "451 4.3.0 try later")
    srv.answer("gone@example.org", "550 5.1.1 no such user")
    srv.answer("policy@example.org", "550 5.7.26 unauthenticated")
    try:
        backend = backend_from_url(srv.url)
        outcomes: list[str] = []
        with backend:
            for to in ("a@example.org", "busy@example.org", "gone@example.org", "b@example.org"):
                try:
                    backend.send(message(to, body=".a line that starts with a dot\r\n.\r\nend"))
                    outcomes.append("sent")
                except TemporaryFailure:
                    outcomes.append("temporary")
                except PermanentFailure:
                    outcomes.append("permanent")
            with pytest.raises(SenderMisconfigured):
                backend.send(message("policy@example.org"))
            backend.send(message("c@example.org"))
        assert outcomes == ["sent", "temporary", "permanent", "sent"]
        received = srv.received
        assert [r.rcpt_tos for r in received] == [
            ["a@example.org"],
            ["b@example.org"],
            ["c@example.org"],
        ]
        assert received[0].data.endswith(b".a line that starts with a dot\r\n.\r\nend\r\n")
        assert len(pipelined) == (6 if pipelining else 0)
    finally:
        srv.stop()


def test_a_partly_refused_envelope_delivers_nothing(server: ScriptedSMTPServer) -> None:
    """One recipient of two refused after DATA was accepted: closing, never an empty message."""
    server.answer("gone@example.org", "550 5.1.1 no such user")
    data = message().data
    backend = backend_from_url(server.url)
    with backend:
        with pytest.raises(PermanentFailure):
            backend.send(
                Message("news@example.org", ("ok@example.org", "gone@example.org"), data, "<1@x>")
            )
        backend.send(message("next@example.org"))
    assert [r.rcpt_tos for r in server.received] == [["next@example.org"]]
