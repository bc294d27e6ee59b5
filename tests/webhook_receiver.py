"""A real HTTP server on 127.0.0.1 that receives webhooks and answers as a test scripts it."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Answer:
    """One scripted answer: status, body, extra headers, and a wait before answering."""

    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Received:
    """One request the receiver got."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class WebhookReceiver:
    """Answers each POST with the next scripted Answer (then the default), keeps every request."""

    def __init__(self, default: Answer | None = None) -> None:
        self.default = default or Answer()
        self.script: list[Answer] = []
        self.received: list[Received] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                with receiver.lock:
                    receiver.received.append(
                        Received("POST", self.path, dict(self.headers.items()), body)
                    )
                    answer = receiver.script.pop(0) if receiver.script else receiver.default
                time.sleep(answer.delay)
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The address to register, with a path."""
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hooks"

    def answer(self, *answers: Answer) -> None:
        """Script the next answers, in order."""
        with self.lock:
            self.script.extend(answers)

    def start(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
