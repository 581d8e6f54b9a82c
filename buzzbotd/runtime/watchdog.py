"""Watchdog: feeds systemd's watchdog while every part is healthy; refreshes STATUS=.

It runs as a task in the main event loop and pings only while every part is
healthy: that the task runs at all proves the loop turns, the scheduler must
have beaten recently, and the database owner must answer a ping (it does while
it waits for a database another process holds: degraded, not hung). A degraded
part is no reason to be restarted (a restart cannot bring Telegram back): it
shows in STATUS= and `buzzbotd status`, and the watchdog keeps being fed.

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
import time
from collections.abc import Awaitable, Callable

from buzzbotd.ops.health import Health
from buzzbotd.runtime.notify import Notifier

log = logging.getLogger("buzzbotd.notify")


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
                if problems != self.health.hung:
                    if problems:
                        log.error("unhealthy, not feeding the watchdog: %s", "; ".join(problems))
                    elif self.health.hung:
                        log.info("healthy again")
                    self.health.hung = problems
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
        if self.health.hung:
            self.notifier.status("unhealthy: " + "; ".join(self.health.hung))
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
