"""A real HTTP receiver on loopback for the webhooks tests and benchmark: it records every
request (headers, body, arrival time) and answers as the test tells it."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    headers: dict
    body: bytes
    arrived: float  # time.time() when the request line arrived (its first byte, near enough)
    path: str = ""

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Receiver:
    """`answer(n)` gives the status for the n-th request (0-based), or "stall" to hold the
    request open until `release` is set."""

    answer: callable = lambda n: 200
    port: int = 0
    requests: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self):
        self._lock = threading.Lock()
        self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                arrived = time.time()
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    n = len(receiver.requests)
                    receiver.requests.append(
                        Received(
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                            arrived,
                            self.path,
                        )
                    )
                status = receiver.answer(n)
                if status == "stall":
                    receiver.release.wait(60)
                    return
                reply = b'{"ok":true}' if status < 300 else b"receiver says no"
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                if 300 <= status < 400:
                    self.send_header("Location", "http://example.com/elsewhere")
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self.release.set()
            self._server.shutdown()
            self._server.server_close()
            self._server = None
