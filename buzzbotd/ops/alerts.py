"""Telegram messages to the admins when something breaks, and when it is over.

Kinds (SPEC "Alerts to admins"): `x` (a slot failed or was skipped), `unclean`
(the daemon started after a crash, a watchdog kill or a power loss), `telegram`
(409: another instance polls the token), `price` (the price API failing for
PRICE_AFTER_S), `database` (locked by another process, or the disk full).
The conditions come from buzzbotd.ops.health; this module decides who hears of
them: at most one message per kind per WINDOW_S, and one "resolved" message
when a condition whose alert went out is over. A condition held back by its
window is told once the window has passed, if it still holds. An admin mutes them with
/alerts off (kept in the meta table) and turns them back on with /alerts on.

Everything but the listener runs in the daemon's event loop; the clock is
injected, so the windows are tested without waiting ten minutes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from buzzbotd.db import DatabaseOwner, meta
from buzzbotd.ops.health import HEALTH, Condition, Health
from buzzbotd.ops.metrics import METRICS
from buzzbotd.runtime.throttle import KeyedThrottle

log = logging.getLogger("buzzbotd.alerts")
WINDOW_S = 600.0            # at most one message per kind in this long
PRICE_AFTER_S = 600.0       # the price API must fail this long before anyone is told
CHECK_EVERY_S = 30.0        # how often delayed and expiring conditions are looked at
MUTED = "alerts.muted"      # meta: admin ids who said /alerts off, comma-separated
CLEAN_STOP = "daemon.clean_stop"   # meta: "1" after a clean stop, "0" while running

TITLES = {
    "x": "X posting",
    "price": "the price API",
    "telegram": "Telegram polling",
    "database": "the database",
    "unclean": "restart",
    "x_plan": "X's plan",
    "x_budget": "the monthly X budget",
    "bluesky": "Bluesky posting",
    "mastodon": "Mastodon posting",
    "channel": "the Telegram channel",
}
DELAY_S = {"price": PRICE_AFTER_S}


# -- in the database owner -----------------------------------------------------


def muted_admins() -> set[int]:
    return {int(x) for x in (meta.get(MUTED) or "").split(",") if x.strip().isdigit()}


def set_muted(admin_id: int, muted: bool) -> None:
    ids = muted_admins()
    (ids.add if muted else ids.discard)(admin_id)
    meta.put(MUTED, ",".join(str(i) for i in sorted(ids)))


def mark_running() -> tuple[bool, datetime | None]:
    """At start: whether the previous run ended without a clean stop (a run that
    recorded no marker, e.g. the first, counts as clean), with its last heartbeat;
    and marks this run as running until mark_stopped()."""
    unclean = meta.get(CLEAN_STOP) == "0"
    meta.put(CLEAN_STOP, "0")
    return unclean, meta.get_time(meta.HEARTBEAT)


def mark_stopped() -> None:
    meta.put(CLEAN_STOP, "1")


# -- in the event loop -----------------------------------------------------------


class Alerts:
    def __init__(self, admins: frozenset[int], owner: DatabaseOwner,
                 send: Callable[[int, str], Awaitable[object]], health: Health = HEALTH
                 ) -> None:
        self.admins = admins
        self.owner = owner
        self.send = send
        self.health = health
        self.clock = health.clock       # the conditions' own clock: durations and windows
        self.loop: asyncio.AbstractEventLoop | None = None
        self._window = KeyedThrottle(WINDOW_S, self.clock)   # kind → its last message
        self._told: set[str] = set()              # kinds whose alert went out, not yet resolved
        self._held: set[str] = set()              # kinds held back by their window
        self._tasks: set[asyncio.Task] = set()

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Starts listening to the conditions; changes arrive from any thread."""
        self.loop = loop
        self.health.listen(lambda part, before, after: loop.call_soon_threadsafe(
            self.on_change, part, before, after))

    async def watch(self) -> None:
        """A task: delayed conditions (the price) and expiring ones (a 409) need a clock."""
        while True:
            await asyncio.sleep(CHECK_EVERY_S)
            self.check()

    def check(self) -> None:
        """Expires what was only seen, never seen to end; and tells of a condition
        not told yet that still holds: a delayed one whose delay is over, or one
        held back by its kind's window once that window has passed."""
        self.health.clear_expired()
        for part, condition in list(self.health.conditions.items()):
            if part not in self._told:
                self.on_change(part, condition, condition)

    def on_change(self, part: str, before: Condition | None, after: Condition | None) -> None:
        if after is None:
            self._held.discard(part)
            if part in self._told:
                self._told.discard(part)
                self._post(part, f"✅ Resolved: {TITLES.get(part, part)} works again "
                                 f"(the problem lasted {_duration(self.clock() - before.since)})."
                           if before else f"✅ Resolved: {TITLES.get(part, part)} works again.")
            return
        if self.clock() - after.since < DELAY_S.get(part, 0):
            return                  # not long enough yet; check() looks again
        self.alert(part, after.reason, since=after.since)

    def alert(self, kind: str, reason: str, since: float | None = None) -> None:
        """Tells the admins, unless this kind was told within WINDOW_S."""
        if not self._window.allow(kind):
            # Not told now (nor its end); check() tells it once the window has
            # passed, if it still holds.
            if kind not in self._held:
                self._held.add(kind)
                log.info("alert %s not sent (one went out %.0fs ago): %s", kind,
                         self._window.since(kind) or 0, reason)
            return
        now = self.clock()
        self._held.discard(kind)
        self._told.add(kind)
        lasting = f" (for {_duration(now - since)})" if since and now - since >= 60 else ""
        self._post(kind, f"⚠️ buzzbotd: {TITLES.get(kind, kind)}{lasting}: {reason}")

    def unclean_start(self, heartbeat: datetime | None) -> None:
        seen = f"; last heartbeat {heartbeat:%Y-%m-%d %H:%M:%S} UTC" if heartbeat else ""
        self._post("unclean", "⚠️ buzzbotd started after an unclean stop (crash, watchdog "
                              f"restart or power loss){seen}. Check journalctl -u buzzbotd.")

    def _post(self, kind: str, text: str) -> None:
        self._window.note(kind)         # a resolved message opens a window too
        if self.loop is None:
            return
        task = self.loop.create_task(self._deliver(kind, text), name=f"alert-{kind}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, kind: str, text: str) -> None:
        muted = await self.owner.run(muted_admins)
        for admin in sorted(self.admins - muted):
            try:
                await self.send(admin, text)
            except Exception as e:  # noqa: BLE001 - an alert that cannot go out is logged, not fatal
                log.warning("alert %s to admin %d not delivered: %s", kind, admin, e)
                continue
            METRICS.inc("alerts_sent_total", label=kind)
            log.info("alert %s sent to admin %d", kind, admin)


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return f"{max(round(seconds), 0)} s"
    return f"{minutes} min" if minutes < 120 else f"{minutes / 60:.1f} h"
