"""The operator's window: GET /health, /metrics, /api/status and the status page /.

Served by tornado in the daemon's own event loop (`[http] listen`), read-only,
no login, and without personal data: no user or chat id is in any answer.
The socket is bound before READY (`bind`, in the main thread, so a bad or
busy address stops the start with a clear error) and served once the loop
runs (`serve`). The Prometheus text comes from prometheus_client, built at
each scrape from buzzbotd.metrics and a few counts read through the database
owner.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import socket
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from buzzbotd import page, status
from buzzbotd.config import ListenError, Settings
from buzzbotd.db import DatabaseOwner
from buzzbotd.metrics import COUNTERS, HISTOGRAMS, METRICS, Metrics
from buzzbotd.notify import Health, Watchdog

log = logging.getLogger("buzzbotd.http")
PREFIX = "buzzbotd_"
DB_TIMEOUT_S = 2.0          # a /health or page that waits longer says the database is stuck
WATCHDOG_PARTS = ("loop", "scheduler", "database")   # the parts whose failure systemd acts on
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
# Everything the page needs is inline: this also proves it loads nothing from elsewhere.
PAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


class WebServer:
    def __init__(self, settings: Settings, owner: DatabaseOwner, health: Health,
                 watchdog: Watchdog, clock: Callable[[], datetime],
                 metrics: Metrics = METRICS) -> None:
        self.settings = settings
        self.owner = owner
        self.health = health
        self.watchdog = watchdog
        self.clock = clock
        self.metrics = metrics
        self._sockets: list[socket.socket] = []
        self._server: tornado.httpserver.HTTPServer | None = None
        self.scrape: MetricsHandler | None = None    # the scrape being answered
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        ProcessCollector(namespace="buzzbotd", registry=self.registry)

    # -- life ------------------------------------------------------------------

    def bind(self) -> str:
        """Binds the listening socket(s); raises ListenError naming the address."""
        address = self.settings.http.address
        assert address is not None
        host, port = address
        try:
            self._sockets = tornado.netutil.bind_sockets(port, host or None, backlog=64)
        except OSError as e:
            why = ("it is in use (another buzzbotd, or another program: ss -ltnp)"
                   if e.errno == errno.EADDRINUSE else e.strerror or str(e))
            raise ListenError(f"{self.settings.path}: http.listen = \"{self.settings.http.listen}\""
                              f": cannot listen on {host}:{port}: {why}") from None
        return self.settings.http.listen

    def serve(self) -> None:
        """In the event loop: starts answering on the bound sockets."""
        app = tornado.web.Application([
            (r"/", PageHandler, {"web": self}),
            (r"/health", HealthHandler, {"web": self}),
            (r"/metrics", MetricsHandler, {"web": self}),
            (r"/api/status", StatusHandler, {"web": self}),
        ], log_function=_log_request, compress_response=False, xsrf_cookies=False)
        self._server = tornado.httpserver.HTTPServer(app, idle_connection_timeout=60)
        self._server.add_sockets(self._sockets)
        log.info("serving http://%s/ (/health, /metrics, /api/status)",
                 self.settings.http.listen)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            await asyncio.wait_for(self._server.close_all_connections(), 2.0)
        for sock in self._sockets:
            sock.close()

    # -- what the handlers answer -------------------------------------------------

    async def db(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.wait_for(asyncio.wrap_future(self.owner.submit(fn, *args)),
                                      DB_TIMEOUT_S)

    async def parts(self) -> dict[str, str]:
        """Each part: "ok", or what is wrong. The watchdog's judgement (the loop turns:
        we are answering; the scheduler beats; the database owner answers), plus
        Telegram, X and the price API as "degraded" when they fail."""
        parts = {"loop": "ok", "scheduler": "ok", "database": "ok"}
        for problem in self.health.stale():
            parts[problem.split()[0]] = problem
        for problem in self.watchdog.problems:
            if problem.startswith("database"):
                parts["database"] = problem
        try:
            await self.db(_nothing)
        except TimeoutError:
            parts["database"] = f"database owner does not answer within {DB_TIMEOUT_S:g}s"
        s = self.settings
        watched = {"x": s.x.enabled, "telegram": s.telegram.enabled,
                   "price": s.x.enabled or s.telegram.enabled}
        for part, on in watched.items():
            if on:
                parts[part] = "ok"
        self.metrics.clear_expired()
        reasons = {part: reason for part, (reason, _) in self.health.degraded().items()}
        reasons.update({part: c.reason for part, c in list(self.metrics.conditions.items())})
        for part, reason in reasons.items():
            if parts.get(part, "ok") == "ok" or part not in WATCHDOG_PARTS:
                parts[part] = f"degraded: {reason}"
        return parts


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


class HealthHandler(_Handler):
    async def get(self) -> None:
        parts = await self.web.parts()
        failing = {k: v for k, v in parts.items() if v != "ok"}
        if not failing:
            self.write_json({"status": "ok", "parts": parts})
            return
        verdict = ("unhealthy" if any(k in WATCHDOG_PARTS for k in failing) else "degraded")
        self.write_json({"status": verdict, "failing": sorted(failing), "parts": parts}, 503)


class StatusHandler(_Handler):
    async def get(self) -> None:
        web = self.web
        report = await web.db(status.collect, web.settings, web.clock())
        report["health"]["pid"] = os.getpid()   # as `buzzbotd status --json` shows it
        self.write_json(report)


class MetricsHandler(_Handler):
    async def get(self) -> None:
        web = self.web
        self._gauges = await web.db(page.gauges, web.settings, web.clock())
        self._parts = await web.parts()
        web.scrape = self    # read by _Collector within generate_latest (no await between)
        body = generate_latest(web.registry)
        self.set_header("Content-Type", PROMETHEUS_TEXT)
        self.finish(body)


class PageHandler(_Handler):
    async def get(self) -> None:
        web = self.web
        data = await web.db(page.collect, web.settings, web.clock())
        parts = await web.parts()
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", PAGE_POLICY)
        self.finish(page.render(data, parts, web.clock()))


class _Collector:
    """buzzbotd's own series, from buzzbotd.metrics and the scrape's database counts."""

    def __init__(self, web: WebServer) -> None:
        self.web = web

    def collect(self) -> Iterator[Metric]:
        scrape = self.web.scrape
        assert scrape is not None
        counters, histograms, _ = self.web.metrics.snapshot()
        families: dict[str, CounterMetricFamily] = {}
        for (name, labels), value in sorted(counters.items()):
            help_text, label_names = COUNTERS.get(name, (name, ()))
            family = families.get(name)
            if family is None:
                # prometheus_client appends _total itself.
                family = families[name] = CounterMetricFamily(
                    PREFIX + name.removesuffix("_total"), help_text, labels=label_names)
            family.add_metric(list(labels), value)
        yield from families.values()
        for name, h in histograms.items():
            cumulative, buckets = 0, []
            for bound, n in zip((*h.bounds, float("inf")), h.counts, strict=True):
                cumulative += n
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            family = HistogramMetricFamily(PREFIX + name, HISTOGRAMS[name][0])
            family.add_metric([], buckets, h.total)
            yield family
        g = scrape._gauges
        yield GaugeMetricFamily(PREFIX + "users", "Telegram users known to the bot",
                                value=g["users"])
        reminders = GaugeMetricFamily(PREFIX + "reminders", "Stored reminders, by state",
                                      labels=["state"])
        reminders.add_metric(["enabled"], g["reminders_enabled"])
        reminders.add_metric(["disabled"], g["reminders_disabled"])
        yield reminders
        if g["last_post"] is not None:
            yield GaugeMetricFamily(PREFIX + "last_post_timestamp_seconds",
                                    "When the last tweet was confirmed posted (Unix time)",
                                    value=g["last_post"])
        if g["next_slot"] is not None:
            yield GaugeMetricFamily(PREFIX + "next_slot_timestamp_seconds",
                                    "The next scheduled slot (Unix time)", value=g["next_slot"])
        paused = GaugeMetricFamily(PREFIX + "x_paused", "1 while posting is paused (/pause)",
                                   value=1 if g["paused"] else 0)
        yield paused
        up = GaugeMetricFamily(PREFIX + "up", "1 when the part is healthy, 0 otherwise",
                               labels=["part"])
        for part, verdict in sorted(scrape._parts.items()):
            up.add_metric([part], 1 if verdict == "ok" else 0)
        yield up
        info = GaugeMetricFamily(PREFIX + "build_info", "The running version",
                                 labels=["version"])
        info.add_metric([status.__version__], 1)
        yield info


def _log_request(handler: tornado.web.RequestHandler) -> None:
    # A scraper every 15 s would fill the journal: requests are logged at debug,
    # errors as warnings.
    request = handler.request
    level = logging.WARNING if handler.get_status() >= 500 else logging.DEBUG
    if log.isEnabledFor(level):
        log.log(level, "%s %s %d %.1fms", request.method, request.uri, handler.get_status(),
                1000 * request.request_time())


def _nothing() -> None:
    return None

