"""Accepting HTTP connections within bounds: a cap on open connections, and
no busy loop when the process is short of file descriptors.

Replaces tornado's accept loop (tornado.netutil.add_accept_handler), which
takes every connection that comes and, when accept() fails with EMFILE, lets
the error escape while the connection stays in the backlog: the listening
socket stays readable, and the loop spins on it (a traceback per turn:
207,760 journal lines and 4.8 s of CPU in 8 s, while X, the price API and
Telegram could open no socket).

Here a connection beyond `limit` is accepted and closed at once (refused, not
left waiting in the backlog), and when accept() itself finds no descriptor
the listening sockets are left alone for PAUSE_S, then tried again. Either
event is logged at most once a minute.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import socket
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("buzzbotd.http")
MAX_CONNECTIONS = 64      # a scraper, a monitor and a few browsers need a handful
FD_SHARE = 4              # HTTP may hold at most a quarter of the process's descriptors
PAUSE_S = 1.0             # no descriptor left: try accept() again after this
WARN_EVERY_S = 60.0
ACCEPTS_PER_TURN = 64     # as tornado: let other callbacks run between bursts


def connection_limit() -> int:
    """How many HTTP connections may be open at once: MAX_CONNECTIONS, or a
    quarter of RLIMIT_NOFILE if that is less, so three quarters of the process's
    descriptors stay for its own work (database, X, Telegram, price API, journal)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(1, min(MAX_CONNECTIONS, soft // FD_SHARE))


class Acceptor:
    """Accepts on `sockets` in the running loop and gives each connection to
    `handle(connection, address)`, which owns it from then on and must call
    `closed()` once when it is closed."""

    def __init__(self, sockets: list[socket.socket],
                 handle: Callable[[socket.socket, Any], None], limit: int) -> None:
        self.sockets = sockets
        self.handle = handle
        self.limit = limit
        self.open = 0
        self.refused = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._resume: asyncio.TimerHandle | None = None
        self._warned_at: dict[str, float] = {}

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._watch()

    def stop(self) -> None:
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        self._unwatch()
        self._loop = None

    def closed(self) -> None:
        self.open -= 1

    def _watch(self) -> None:
        assert self._loop is not None
        for sock in self.sockets:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def _unwatch(self) -> None:
        if self._loop is not None:
            for sock in self.sockets:
                self._loop.remove_reader(sock.fileno())

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(ACCEPTS_PER_TURN):
            try:
                connection, address = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue            # the client gave up while it waited in the backlog
            except OSError as e:
                # EMFILE, ENFILE, ENOBUFS, ENOMEM: the connection stays in the backlog
                # and the socket readable. (Any other error is paused on too: none
                # may make the loop spin.)
                self._pause(e)
                return
            if self.open >= self.limit:
                connection.close()
                self.refused += 1
                self._warn("full", f"{self.open} connections open (the limit): refusing new "
                                   f"ones ({self.refused} refused so far)")
                continue
            self.open += 1
            try:
                connection.setblocking(False)
                self.handle(connection, address)
            except BaseException:
                self.open -= 1
                connection.close()
                raise

    def _pause(self, error: OSError) -> None:
        """No descriptor (or memory) for a new connection: stop watching the listening
        sockets for PAUSE_S, so the waiting connection does not wake the loop on every
        turn; the daemon's own connections get the descriptors that free up."""
        if self._resume is not None:
            return                  # another listening socket's turn, before it was unwatched
        self._unwatch()
        assert self._loop is not None
        self._resume = self._loop.call_later(PAUSE_S, self._after_pause)
        self._warn("short", f"cannot accept a connection: {error.strerror} "
                            f"({errno.errorcode.get(error.errno or 0, error.errno)}, "
                            f"{self.open} open); trying again every {PAUSE_S:g} s")

    def _after_pause(self) -> None:
        self._resume = None
        if self._loop is not None:
            self._watch()

    def _warn(self, kind: str, message: str) -> None:
        now = time.monotonic()
        if now - self._warned_at.get(kind, -WARN_EVERY_S) >= WARN_EVERY_S:
            self._warned_at[kind] = now
            log.warning("%s", message)
