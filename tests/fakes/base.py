"""The common part of the fake APIs: a threaded HTTP server on 127.0.0.1 with
a record of every request and a queue of faults per route.

A fake is used in-process by the tests (and by `make demo`): the test calls
its methods to inject faults and reads what it recorded. Stdlib only.

Faults, consumed one per matching request, in order:
  Fault.status(503)                 answer 503 without doing the work
  Fault.status(429, headers={...})  e.g. a rate limit with its reset headers
  Fault.hang(seconds)               accept, then answer nothing for that long
  Fault.drop()                      close the connection without an answer
  Fault(..., after=True)            do the work (e.g. store the tweet) first,
                                    then hang/drop/fail instead of answering
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.time)
    # The fake's URL it came in through: a daemon given a URL of its own (another_url)
    # is told apart from another daemon by it (two daemons sharing one fake).
    via: str = ""
    # The client's connection, to tell a waiting call whose client died (kill -9).
    connection: Any = field(default=None, repr=False, compare=False)

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Response:
    status: int = 200
    body: Any = None                  # JSON-serialisable, or bytes sent as they are
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Fault:
    kind: str                         # status | hang | drop
    status: int = 0
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    after: bool = False               # do the work first, then misbehave
    on_hit: Callable[[Request], None] | None = None   # called when the fault fires

    @classmethod
    def status_code(cls, status: int, body: Any = None, headers: dict[str, str] | None = None,
                    **kw: Any) -> Fault:
        return cls("status", status=status, body=body, headers=headers or {}, **kw)

    @classmethod
    def hang(cls, seconds: float, **kw: Any) -> Fault:
        return cls("hang", seconds=seconds, **kw)

    @classmethod
    def drop(cls, **kw: Any) -> Fault:
        return cls("drop", **kw)


class FakeAPI:
    """Subclasses implement `handle(request) -> Response` and name routes with `route()`."""

    name = "fake"

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._faults: dict[str, deque[Fault]] = defaultdict(deque)
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._more: list[tuple[ThreadingHTTPServer, threading.Thread]] = []

    # -- life ------------------------------------------------------------------

    def start(self, port: int = 0) -> FakeAPI:
        self._server, self._thread = self._listen(port)
        return self

    def another_url(self) -> str:
        """The same fake on one more port: requests through it have it as `via`."""
        server, thread = self._listen(0)
        self._more.append((server, thread))
        host, port = server.server_address[:2]
        return f"http://{host}:{port}"

    def _listen(self, port: int) -> tuple[ThreadingHTTPServer, threading.Thread]:
        api = self

        class Handler(_Handler):
            fake = api

        server = _Server(("127.0.0.1", port), Handler)
        # A short poll: stop() (every test's teardown) waits for the next one.
        thread = threading.Thread(target=server.serve_forever, args=(0.05,),
                                  name=f"fake-{self.name}", daemon=True)
        thread.start()
        return server, thread

    def stop(self) -> None:
        self._stopping.set()
        servers = [s for s in [self._server, *(s for s, _ in self._more)] if s is not None]
        for server in servers:
            server.shutdown()
            server.server_close()

    def via(self, url: str) -> list[Request]:
        """The requests that came in through `url` (self.url or an another_url())."""
        with self._lock:
            return [r for r in self.requests if r.via == url]

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- faults and records ------------------------------------------------------

    def add_fault(self, route: str, fault: Fault, times: int = 1) -> None:
        """Queues `fault` for the next `times` requests to `route` (e.g. "POST /2/tweets")."""
        with self._lock:
            self._faults[route].extend([fault] * times)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def route(self, request: Request) -> str:
        return f"{request.method} {request.path}"

    def handle(self, request: Request) -> Response:
        raise NotImplementedError

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Waits (without polling) until predicate() holds after some request; True if it did."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    def notify_changed(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def _next_fault(self, request: Request) -> Fault | None:
        with self._lock:
            queue = self._faults.get(self.route(request))
            return queue.popleft() if queue else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass    # a client killed mid-answer (kill -9 trials) is the test's doing


class _Handler(BaseHTTPRequestHandler):
    fake: FakeAPI
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without TCP_NODELAY, Nagle's
        # algorithm meets the client's delayed ACK and adds ~40 ms to every answer
        # on a kept-alive connection (measured), which real APIs do not.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:   # quiet; requests are recorded
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            query = parse_qs(parts.query) | parse_qs(body.decode())
        else:
            query = parse_qs(parts.query)
        host, port = self.server.server_address[:2]
        request = Request(self.command, parts.path, query, dict(self.headers.items()), body,
                          via=f"http://{host}:{port}", connection=self.connection)
        fake = self.fake
        with fake._lock:
            fake.requests.append(request)
        fault = fake._next_fault(request)
        try:
            if fault is None:
                self._answer(fake.handle(request))
                return
            if fault.after:
                fake.handle(request)          # the work is done; its answer will be lost
            if fault.on_hit is not None:
                fault.on_hit(request)
            if fault.kind == "hang":
                fake._stopping.wait(fault.seconds)
                self.close_connection = True
            elif fault.kind == "drop":
                self.close_connection = True
            else:
                self._answer(Response(fault.status, fault.body, fault.headers))
        finally:
            fake.notify_changed()

    def _answer(self, response: Response) -> None:
        body = response.body
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        self.send_response(response.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)
