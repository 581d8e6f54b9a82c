"""Talking to systemd (sd_notify), and the health of the parts (`Health`).

`Notifier` sends READY/STATUS/STOPPING/WATCHDOG and is silent without
NOTIFY_SOCKET. `Health` collects heartbeats, and the parts that are degraded
(up, but not doing their work: Telegram unreachable, a token refused, the
clock not yet set); buzzbotd.runtime.watchdog decides when systemd's watchdog
may be fed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime

import sdnotify

from buzzbotd.clock import Clock, utc_now

log = logging.getLogger("buzzbotd.notify")


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        environ = dict(os.environ) if environ is None else environ
        self._sd = sdnotify.SystemdNotifier()
        self.enabled = bool(environ.get("NOTIFY_SOCKET"))
        self.watchdog_interval = _watchdog_interval(environ)
        self.last_status = ""

    def _send(self, message: str) -> None:
        if self.enabled:
            # sdnotify encodes as Latin-1 and silently drops a message it cannot
            # encode (a STATUS= with "…" or "→", and READY=1 with it); systemd
            # reads UTF-8, so hand it the UTF-8 bytes spelled as Latin-1.
            self._sd.notify(message.encode("utf-8").decode("latin-1"))

    def ready(self, status: str) -> None:
        self.last_status = status
        self._send(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        if status != self.last_status:
            self.last_status = status
            self._send(f"STATUS={status}")

    def stopping(self, status: str = "stopping") -> None:
        self.last_status = status
        self._send(f"STOPPING=1\nSTATUS={status}")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")


def _watchdog_interval(environ: dict[str, str]) -> float | None:
    """Half of WATCHDOG_USEC in seconds, as sd_watchdog_enabled(3) advises."""
    usec = environ.get("WATCHDOG_USEC")
    pid = environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec), 1) / 2_000_000
    except ValueError:
        return None


class Health:
    """Heartbeats of the parts that run in their own threads, and the parts that
    are degraded. Thread-safe: any thread may beat, degrade or recover."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, wall: Clock = utc_now
                 ) -> None:
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._beats: dict[str, tuple[float, float]] = {}  # name -> (last beat, max age)
        self._degraded: dict[str, tuple[str, datetime]] = {}
        # Called (from the thread that changed it) when the degraded parts change.
        self.on_change: Callable[[], None] | None = None

    def degrade(self, part: str, reason: str) -> None:
        """`part` is up but not doing its work, for `reason`. The first `since` is
        kept while it stays degraded, whatever the reason becomes."""
        with self._lock:
            old = self._degraded.get(part)
            self._degraded[part] = (reason, old[1] if old else self._wall())
        if old is None or old[0] != reason:
            self._changed()

    def recover(self, part: str) -> None:
        with self._lock:
            old = self._degraded.pop(part, None)
        if old is not None:
            self._changed()

    def now(self) -> datetime:
        """The wall clock the `since` times are read on."""
        return self._wall()

    def degraded(self) -> dict[str, tuple[str, datetime]]:
        """part -> (reason, since as an aware UTC datetime)."""
        with self._lock:
            return dict(self._degraded)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def register(self, name: str, max_age_s: float) -> None:
        with self._lock:
            self._beats[name] = (self._clock(), max_age_s)

    def beat(self, name: str) -> None:
        with self._lock:
            _, max_age = self._beats[name]
            self._beats[name] = (self._clock(), max_age)

    def stale(self) -> list[str]:
        """Parts whose last beat is older than they promised."""
        now = self._clock()
        with self._lock:
            return [f"{name} silent for {now - last:.0f}s"
                    for name, (last, max_age) in self._beats.items() if now - last > max_age]
