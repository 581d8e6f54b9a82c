"""Talking to systemd (sd_notify) and deciding when the watchdog may be fed.

`Notifier` sends READY/STATUS/STOPPING/WATCHDOG and is silent without
NOTIFY_SOCKET. `Health` collects heartbeats and the parts that work but are
degraded; `Watchdog` runs as a task in the main event loop and pings only
while every part is healthy: that the task runs at all proves the loop
turns, the scheduler must have beaten recently, and the database owner must
answer a ping (it does while it waits for a database another process holds:
degraded, not hung).

Margins, with WatchdogSec = W: pings are due every W/2; the database ping
may take W/4; the STATUS line is built in its own task, so a slow database
never delays a ping. A healthy process thus pings at most 3W/4 apart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import sdnotify

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
            self._sd.notify(message)

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
    """Heartbeats of the parts that run in their own threads."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._beats: dict[str, tuple[float, float]] = {}  # name -> (last beat, max age)
        self._degraded: dict[str, tuple[str, datetime]] = {}  # part -> (reason, since)

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

    def degrade(self, part: str, reason: str) -> None:
        """`part` works but not fully; a repeated call keeps the first `since`."""
        with self._lock:
            _, since = self._degraded.get(part, (reason, datetime.now(UTC)))
            self._degraded[part] = (reason, since)

    def recover(self, part: str) -> None:
        with self._lock:
            self._degraded.pop(part, None)

    def degraded(self) -> dict[str, tuple[str, datetime]]:
        with self._lock:
            return dict(self._degraded)


class Watchdog:
    """Feeds systemd's watchdog while every part is healthy; refreshes STATUS."""

    DEGRADED_STATUS_EVERY_S = 5.0     # "locked … for N s" counts up while it lasts

    def __init__(self, notifier: Notifier, health: Health,
                 ping_database: Callable[[], Awaitable[None]],
                 status_text: Callable[[], Awaitable[str]], status_every_s: float = 30.0) -> None:
        self.notifier = notifier
        self.health = health
        self.ping_database = ping_database
        self.status_text = status_text
        self.interval = notifier.watchdog_interval or status_every_s
        self.status_every_s = status_every_s
        self.problems: list[str] = []
        self._status_task: asyncio.Task | None = None

    async def check(self) -> list[str]:
        problems = self.health.stale()
        try:
            await asyncio.wait_for(self.ping_database(), timeout=max(self.interval / 2, 0.5))
        except TimeoutError:
            problems.append("database owner does not answer")
        except Exception as e:  # noqa: BLE001 - any failure of the ping is unhealthy
            problems.append(f"database owner failed: {e}")
        return problems

    async def loop(self) -> None:
        next_status = 0.0
        degraded: set[str] = set()
        try:
            while True:
                started = time.monotonic()
                problems = await self.check()
                if problems != self.problems:
                    if problems:
                        log.error("unhealthy, not feeding the watchdog: %s", "; ".join(problems))
                    elif self.problems:
                        log.info("healthy again")
                    self.problems = problems
                if not problems and self.notifier.watchdog_interval:
                    self.notifier.watchdog()
                now_degraded = set(self.health.degraded())
                if now_degraded != degraded or time.monotonic() >= next_status:
                    degraded = now_degraded
                    next_status = time.monotonic() + (self.DEGRADED_STATUS_EVERY_S if degraded
                                                      else self.status_every_s)
                    self._refresh_in_background()
                # A fixed cadence: the time the check took is not added to the interval.
                await asyncio.sleep(max(started + self.interval - time.monotonic(), 0))
        finally:
            if self._status_task is not None:
                self._status_task.cancel()

    def _refresh_in_background(self) -> None:
        if self._status_task is None or self._status_task.done():
            self._status_task = asyncio.get_running_loop().create_task(
                self.refresh_status(), name="watchdog-status")

    async def refresh_status(self) -> None:
        if self.problems:
            self.notifier.status("unhealthy: " + "; ".join(self.problems))
            return
        degraded = self.health.degraded()
        now = datetime.now(UTC)
        notes = ", ".join(f"{part} {reason} for {max((now - since).total_seconds(), 0):.0f} s"
                          for part, (reason, since) in sorted(degraded.items()))
        if "database" in degraded:
            # The usual line comes from the database, which cannot answer now.
            self.notifier.status(f"degraded: {notes}")
            return
        try:
            text = await asyncio.wait_for(self.status_text(), timeout=self.interval)
        except Exception as e:  # noqa: BLE001 - a status line must never stop the watchdog
            log.warning("cannot build the status line: %s", str(e) or type(e).__name__)
            if notes:
                self.notifier.status(f"degraded: {notes}")
            return
        self.notifier.status(f"{text}; degraded: {notes}" if notes else text)
