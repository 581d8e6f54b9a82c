"""The HTTP server, the operator's window: GET /health, /metrics, /api/status and /.

Served by tornado in the daemon's own event loop (`[http] listen`), read-only,
no login, and without personal data: no user or chat id is in any answer.
The socket is bound before READY (`bind`, in the main thread, so a bad or
busy address stops the start with a clear error) and served once the loop
runs (`serve`). The Prometheus text comes from prometheus_client, built at
each scrape from ops/metrics.py and a few counts read through the database
owner (web/prometheus.py).

What costs memory is loaded when first used, not at start: tornado (+2.6 MiB,
web/handlers.py) at the first connection, prometheus_client (+1 MiB) at the
first GET /metrics. Until then the loop only watches the listening socket.

Connections are accepted by buzzbotd.web.accept (a cap on how many are open,
no busy loop when file descriptors run out) and handed to tornado one by one;
what each may cost is buzzbotd.web.handlers'.
"""

from __future__ import annotations

import asyncio
import errno
import importlib.util
import logging
import socket
import sys
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from buzzbotd.config import ListenError, Settings
from buzzbotd.db import DatabaseOwner
from buzzbotd.ops.health import WATCHDOG_PARTS, Health
from buzzbotd.ops.metrics import METRICS, Metrics
from buzzbotd.web.accept import Acceptor, connection_limit

if TYPE_CHECKING:
    from buzzbotd.web import handlers
    from buzzbotd.web.prometheus import Exposition

log = logging.getLogger("buzzbotd.http")
DB_TIMEOUT_S = 2.0          # a /health or page that waits longer says the database is stuck
BACKLOG = 64


class WebServer:
    watchdog_parts = WATCHDOG_PARTS

    def __init__(self, settings: Settings, owner: DatabaseOwner, health: Health,
                 clock: Callable[[], datetime],
                 metrics: Metrics = METRICS, role: Callable[[], str | None] = lambda: None
                 ) -> None:
        """`role()`: "leader" or "standby" on PostgreSQL, None on SQLite."""
        self.settings = settings
        self.role = role
        self.owner = owner
        self.health = health
        self.clock = clock
        self.metrics = metrics
        self._sockets: list[socket.socket] = []
        self._acceptor: Acceptor | None = None
        self._server: handlers.Server | None = None
        self._exposition: Exposition | None = None

    # -- life ------------------------------------------------------------------

    def bind(self) -> str:
        """Binds the listening socket(s); raises ListenError naming the address."""
        address = self.settings.http.address
        assert address is not None
        host, port = address
        try:
            self._sockets = _bind(host, port)
        except OSError as e:
            why = ("it is in use (another buzzbotd, or another program: ss -ltnp)"
                   if e.errno == errno.EADDRINUSE else e.strerror or str(e))
            raise ListenError(f"{self.settings.path}: http.listen = \"{self.settings.http.listen}\""
                              f": cannot listen on {host}:{port}: {why}") from None
        # Both are loaded at first use; a broken install must still stop the start.
        for library in ("tornado", "prometheus_client"):
            if sys.modules.get(library, 0) is None or importlib.util.find_spec(library) is None:
                raise ListenError(f"{self.settings.path}: http.listen = "
                                  f"\"{self.settings.http.listen}\": the HTTP server needs "
                                  f"{library}, which is not installed (reinstall buzzbotd)")
        # python-telegram-bot, imported after this, loads tornado.web for its webhook
        # server whenever it can (+2.6 MiB at start); we poll, so it must not. Our own
        # import lifts this (_first_connection).
        sys.modules.setdefault("tornado", None)  # type: ignore[arg-type]
        return self.settings.http.listen

    def serve(self) -> None:
        """In the event loop: answers on the bound sockets from the first connection on."""
        self._acceptor = Acceptor(self._sockets, self._take, connection_limit())
        self._acceptor.start()
        log.info("serving http://%s/ (/health, /metrics, /api/status; at most %d "
                 "connections)", self.settings.http.listen, self._acceptor.limit)

    def _take(self, connection: socket.socket, address: Any) -> None:
        """A connection the acceptor let in, for tornado (loaded by the first one)."""
        if self._server is None:
            self._server = self._start_tornado()
        self._server.take(connection, address)

    def _start_tornado(self) -> handlers.Server:
        if "tornado" in sys.modules and sys.modules["tornado"] is None:
            del sys.modules["tornado"]
        # tornado.log imports curses for coloured terminal logs we never use
        # (ncurses and tinfo: +0.4 MiB); it is kept out while tornado loads.
        hide_curses = "curses" not in sys.modules
        if hide_curses:
            sys.modules["curses"] = None  # type: ignore[assignment]
        try:
            from buzzbotd.web import handlers
        finally:
            if hide_curses:
                del sys.modules["curses"]
        assert self._acceptor is not None
        log.debug("http: tornado started at the first connection")
        return handlers.serve(self, self._acceptor.closed)

    async def stop(self) -> None:
        if self._acceptor is not None:
            self._acceptor.stop()
        if self._server is not None:
            await asyncio.wait_for(self._server.close_all_connections(), 2.0)
        for sock in self._sockets:
            sock.close()

    # -- what the handlers answer -------------------------------------------------

    def exposition(self) -> Exposition:
        """The Prometheus registry, made (and prometheus_client imported) at the first scrape."""
        if self._exposition is None:
            from buzzbotd.web.prometheus import Exposition
            self._exposition = Exposition(self.metrics)
        return self._exposition

    async def db(self, fn: Callable[..., Any], *args: Any) -> Any:
        """What `fn(*args)` reads; unfenced, so a standby answers too."""
        return await asyncio.wait_for(self.owner.read(fn, *args), DB_TIMEOUT_S)

    async def parts(self, owner_answered: bool = False) -> dict[str, str]:
        """Each part: "ok", or what is wrong (buzzbotd.ops.health). With
        `owner_answered` (the request's own owner call just came back) the owner is
        not asked again: each hop to its thread and back costs a wake-up of both."""
        silent = None
        try:
            if not owner_answered:
                await self.db(_nothing)
        except TimeoutError:
            silent = f"database owner does not answer within {DB_TIMEOUT_S:g}s"
        s = self.settings
        return self.health.parts({"x": s.x.enabled, "telegram": s.telegram.enabled,
                                  "price": s.x.enabled or s.telegram.enabled}, silent)


def _bind(host: str, port: int) -> list[socket.socket]:
    """Listening sockets for every address `host` resolves to ("" = all), as
    tornado.netutil.bind_sockets makes them, without importing tornado yet."""
    sockets: list[socket.socket] = []
    seen = set()
    try:
        for family, _, _, _, address in socket.getaddrinfo(
                host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0,
                socket.AI_PASSIVE):
            if family not in (socket.AF_INET, socket.AF_INET6) or (family, address) in seen:
                continue
            seen.add((family, address))
            try:
                sock = socket.create_server(address, family=family, backlog=BACKLOG)
            except OSError as e:
                # "localhost" may resolve to ::1 on a host without IPv6 (as tornado skips it).
                if e.errno == errno.EADDRNOTAVAIL and host == "localhost" and family == \
                        socket.AF_INET6:
                    continue
                raise
            sock.setblocking(False)
            sockets.append(sock)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _nothing() -> None:
    return None
