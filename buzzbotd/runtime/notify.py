"""Talking to systemd (sd_notify) and deciding when the watchdog may be fed.

`Notifier` sends READY/STATUS/STOPPING/WATCHDOG and is silent without
NOTIFY_SOCKET. `Health` collects heartbeats, and the parts that are degraded
(up, but not doing their work: Telegram unreachable, a token refused, the
clock not yet set); `Watchdog` runs as a task in the main event loop and pings
only while every part is healthy: that the task runs at all proves the loop
turns, the scheduler must have beaten recently, and the database owner must
answer a ping (it does while it waits for a database another process holds:
degraded, not hung). A degraded part is no reason to be restarted (a restart cannot
bring Telegram back): it shows in STATUS= and `buzzbotd status`, and the
watchdog keeps being fed.

The watchdog's margins, with WatchdogSec=W (systemd passes WATCHDOG_USEC):
  - the loop checks and pings every I = W/2 (sd_watchdog_enabled(3)'s advice);
    a check waits at most I/2 for the database owner's ping, and the next
    check starts I after the previous one *started*, so pings are at most
    I + I/2 = 3W/4 apart while healthy: under W, a quarter of W to spare;
  - the scheduler thread beats every I/3 and counts as hung when its last beat
    is older than I: three beats missed, not one late one;
  - the STATUS line is built in a task of its own, so a slow database never
    delays a ping;
  - so a hung part is reported at the first check after I, at most 3W/4 later
    the pings stop, and systemd aborts the process W after the last ping.
With the unit's WatchdogSec=30: checks every 15 s, database ping timeout 7.5 s,
beats every 5 s, a beat older than 15 s is a hang.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
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
        if "database" in degraded:
            # The usual line comes from the database, which cannot answer now.
            now = self.health.now()
            self.notifier.status("degraded: " + ", ".join(
                f"{part} {reason} for {max((now - since).total_seconds(), 0):.0f} s"
                for part, (reason, since) in sorted(degraded.items())))
            return
        try:
            # The line names the degraded parts itself (status.status_line).
            text = await asyncio.wait_for(self.status_text(), timeout=self.interval)
        except Exception as e:  # noqa: BLE001 - a status line must never stop the watchdog
            log.warning("cannot build the status line: %s", str(e) or type(e).__name__)
            return
        self.notifier.status(text)
