"""The tornado application behind buzzbotd.web: the four routes and their handlers.

Imported by WebServer at the first connection (see buzzbotd.web), so tornado
is loaded only once someone asks something of the server.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

import tornado.httpserver
import tornado.web

from buzzbotd.ops import status
from buzzbotd.ops.health import WATCHDOG_PARTS
from buzzbotd.web import page
from buzzbotd.web.server import WebServer

log = logging.getLogger("buzzbotd.http")
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
# Everything the page needs is inline: this also proves it loads nothing from elsewhere.
PAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def serve(web: WebServer, sockets: list[socket.socket]) -> tornado.httpserver.HTTPServer:
    """Starts answering on the bound `sockets`, in the running loop."""
    app = tornado.web.Application([
        (r"/", PageHandler, {"web": web}),
        (r"/health", HealthHandler, {"web": web}),
        (r"/metrics", MetricsHandler, {"web": web}),
        (r"/api/status", StatusHandler, {"web": web}),
    ], log_function=_log_request, compress_response=False, xsrf_cookies=False)
    server = tornado.httpserver.HTTPServer(app, idle_connection_timeout=60)
    server.add_sockets(sockets)
    return server


class _Handler(tornado.web.RequestHandler):
    def initialize(self, web: WebServer) -> None:
        self.web = web

    def set_default_headers(self) -> None:
        self.clear_header("Server")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")

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
        verdict = ("unhealthy" if any(k in WATCHDOG_PARTS for k in failing) else "degraded")
        self.write_json({"status": verdict, **seen, "failing": sorted(failing), "parts": parts},
                        503)


class StatusHandler(_Handler):
    async def get(self) -> None:
        web = self.web
        report = await web.db(status.collect, web.settings, web.clock())
        report["health"]["pid"] = os.getpid()   # as `buzzbotd status --json` shows it
        self.write_json(report)


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
