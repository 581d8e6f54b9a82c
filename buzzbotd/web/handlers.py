"""The tornado application behind the HTTP server: the four routes and their handlers.

Imported by WebServer (web/server.py) at the first connection, so tornado is
loaded only once someone asks something of the server; it reads the server
through `ServerFace`, the part of WebServer's face it needs.
What one client may cost is bounded (tornado's defaults allow a 100 MB body,
headers that take an hour, and no end to a connection): every route is a GET,
so no body is read at all; headers are at most MAX_HEADER_BYTES and must
arrive within HEADER_TIMEOUT_S; a connection serves one request and lives at
most LIFETIME_S (a client that does not read its answer is dropped then);
how many connections may be open is buzzbotd.web.accept's.

A request must name this machine in its Host header (`allowed_host`): a web
page whose own name an attacker points at 127.0.0.1 (DNS rebinding) could
otherwise read these answers from a browser on this machine or at the end of
an ssh tunnel.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import re
import socket
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import tornado.httpserver
import tornado.iostream
import tornado.web

from buzzbotd.ops import status
from buzzbotd.web import page

if TYPE_CHECKING:
    from buzzbotd.config import Settings
    from buzzbotd.web.prometheus import Exposition

log = logging.getLogger("buzzbotd.http")
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
# Everything the page needs is inline: this also proves it loads nothing from elsewhere.
PAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
MAX_HEADER_BYTES = 8 * 1024    # a browser's request is < 2 KiB
HEADER_TIMEOUT_S = 10.0        # from the connection to the end of the headers
LIFETIME_S = 60.0
READ_BUFFER_BYTES = 64 * 1024  # tornado's default is 100 MB
# An e-mail address (a service account's) in an error shown to anyone who asks.
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")


class ServerFace(Protocol):
    """What the handlers read of the WebServer."""
    settings: Settings
    watchdog_parts: tuple[str, ...]      # a failing one makes /health "unhealthy"

    def clock(self) -> datetime: ...
    async def db(self, fn: Callable[..., Any], *args: Any) -> Any: ...
    async def parts(self, owner_answered: bool = False) -> dict[str, str]: ...
    def role(self) -> str | None: ...
    def exposition(self) -> Exposition: ...


def serve(web: ServerFace, closed: Callable[[], None]) -> Server:
    """The server, in the running loop; connections come through Server.take, and
    `closed()` is called as each ends."""
    app = tornado.web.Application([
        (r"/", PageHandler, {"web": web}),
        (r"/health", HealthHandler, {"web": web}),
        (r"/metrics", MetricsHandler, {"web": web}),
        (r"/api/status", StatusHandler, {"web": web}),
    ], log_function=_log_request, compress_response=False, xsrf_cookies=False)
    # max_body_size=0: a request with a body (a Content-Length above 0, or a chunk) is
    # answered 400 and closed before any of it is read; no body_timeout is needed.
    # idle_connection_timeout is tornado's limit on reading the headers.
    return Server(app, closed, no_keep_alive=True, max_header_size=MAX_HEADER_BYTES,
                  idle_connection_timeout=HEADER_TIMEOUT_S, max_body_size=0)


class Server(tornado.httpserver.HTTPServer):
    """tornado's HTTP server, given connections one by one (buzzbotd.web.accept
    accepts them), each closed after LIFETIME_S if it is still open."""

    def initialize(self, app: tornado.web.Application,  # type: ignore[override]
                   closed: Callable[[], None], **kwargs: Any) -> None:
        super().initialize(app, **kwargs)
        self._closed = closed
        self._deadlines: dict[tornado.iostream.IOStream, asyncio.TimerHandle] = {}

    def take(self, connection: socket.socket, address: Any) -> None:
        stream = tornado.iostream.IOStream(connection, max_buffer_size=READ_BUFFER_BYTES,
                                           read_chunk_size=READ_BUFFER_BYTES // 2)
        self._deadlines[stream] = asyncio.get_running_loop().call_later(LIFETIME_S,
                                                                        stream.close)
        self.handle_stream(stream, address)

    def on_close(self, server_conn: Any) -> None:
        super().on_close(server_conn)
        deadline = self._deadlines.pop(server_conn.stream, None)
        if deadline is not None:
            deadline.cancel()
        self._closed()


def allowed_host(host: str, local_address: str | None, listen_host: str) -> bool:
    """Whether a request's Host names this server: the host of http.listen,
    `localhost`, this machine's name, a loopback address, or the address the
    connection came in on. The port is not compared (an ssh tunnel or a proxy may
    change it); an IP literal cannot be the name of an attacker's page."""
    name = host.lower().rstrip(".")
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    machine = socket.gethostname().lower()
    if name in ("localhost", machine, f"{machine}.local") or (listen_host and name ==
                                                                  listen_host.lower()):
        return True
    try:
        address = _plain(ipaddress.ip_address(name))
    except ValueError:
        return False
    if address.is_loopback:
        return True
    try:
        return local_address is not None and \
            address == _plain(ipaddress.ip_address(local_address.split("%")[0]))
    except ValueError:
        return False


def _plain(address: ipaddress.IPv4Address | ipaddress.IPv6Address
           ) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """192.0.2.1 for ::ffff:192.0.2.1 (an IPv4 client of a dual-stack socket)."""
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def public(report: dict[str, Any], settings: Any) -> dict[str, Any]:
    """`buzzbotd status --json` for an unauthenticated client: without what names
    the operator's accounts (the spreadsheet's id, the service account's e-mail,
    the database's path or server), which the local `buzzbotd status` shows."""
    report = {**report, "database": "postgresql" if settings.database.url else "sqlite"}
    sheets = dict(report.get("sheets") or {})
    spreadsheet_id = sheets.pop("spreadsheet_id", "") or ""
    if sheets.get("last_error"):
        error = sheets["last_error"]
        if spreadsheet_id:
            error = error.replace(spreadsheet_id, "(sheets.spreadsheet_id)")
        sheets["last_error"] = EMAIL.sub("(the service account)", error)
    report["sheets"] = sheets
    return report


class _Handler(tornado.web.RequestHandler):
    def initialize(self, web: Server) -> None:
        self.web = web

    def set_default_headers(self) -> None:
        self.clear_header("Server")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")

    def prepare(self) -> None:
        # 421 Misdirected Request (RFC 9110 15.5.20): this server is not the one that
        # name is for. Not 403: nothing is wrong with the client's rights, and it
        # points whoever reads it at the address instead.
        stream = getattr(self.request.connection, "stream", None)
        sock = getattr(stream, "socket", None)
        local = sock.getsockname()[0] if sock is not None else None
        listen = self.web.settings.http.address
        if not allowed_host(self.request.host_name, local, listen[0] if listen else ""):
            self.set_status(421)
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish("421 Misdirected Request: this server answers only to localhost, "
                        "this machine's name or addresses, or the host of http.listen\n")

    def compute_etag(self) -> None:
        return None       # every answer is fresh (Cache-Control: no-store)

    def write_json(self, value: Any, code: int = 200) -> None:
        self.set_status(code)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(value, indent=2) + "\n")

    async def read_with_parts(self, collect: Callable[..., Any]) -> tuple[Any, dict[str, str]]:
        """What `collect(settings, now)` reads through the database owner, and each
        part's health (the owner has just answered: it is not asked again)."""
        web = self.web
        data = await web.db(collect, web.settings, web.clock())
        return data, await web.parts(owner_answered=True)


class HealthHandler(_Handler):
    async def get(self) -> None:
        parts = await self.web.parts()
        failing = {k: v for k, v in parts.items() if v != "ok"}
        role = self.web.role()
        seen = {"role": role} if role else {}
        if not failing:
            self.write_json({"status": "ok", **seen, "parts": parts})
            return
        watched = any(k in self.web.watchdog_parts for k in failing)
        verdict = "unhealthy" if watched else "degraded"
        self.write_json({"status": verdict, **seen, "failing": sorted(failing), "parts": parts},
                        503)


class StatusHandler(_Handler):
    async def get(self) -> None:
        web = self.web
        report = await web.db(status.collect, web.settings, web.clock())
        report["health"]["pid"] = os.getpid()   # as `buzzbotd status --json` shows it
        self.write_json(public(report, web.settings))


class MetricsHandler(_Handler):
    async def get(self) -> None:
        gauges, parts = await self.read_with_parts(page.gauges)
        self.set_header("Content-Type", PROMETHEUS_TEXT)
        self.finish(self.web.exposition().render(gauges, parts))


class PageHandler(_Handler):
    async def get(self) -> None:
        data, parts = await self.read_with_parts(page.collect)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", PAGE_POLICY)
        self.finish(page.render(data, parts, self.web.clock()))


def _log_request(handler: tornado.web.RequestHandler) -> None:
    # A scraper every 15 s would fill the journal: requests are logged at debug,
    # errors as warnings.
    request = handler.request
    level = logging.WARNING if handler.get_status() >= 500 else logging.DEBUG
    if log.isEnabledFor(level):
        log.log(level, "%s %s %d %.1fms", request.method, request.uri, handler.get_status(),
                1000 * request.request_time())
