"""The daemon's parts, built from the settings, each imported only when it is on.

The price client, the X poster, the Telegram bot, the Sheets sync, the admins'
alerts and the HTTP server (`build`, `bind_http`); and the parts of the stop
(runtime.lifecycle.Part) the daemon holds: `Jobs` (the scheduler and what its
jobs run), `TheBot`, `Http` and `CleanStop` (the marker the next start reads).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from buzzbotd.clock import Clock, is_sane
from buzzbotd.config import Settings
from buzzbotd.db import DatabaseOwner
from buzzbotd.db.models import utc_text
from buzzbotd.ops import alerts
from buzzbotd.ops.health import Health
from buzzbotd.runtime.lifecycle import in_thread
from buzzbotd.runtime.scheduler import Scheduler

if TYPE_CHECKING:
    from buzzbotd.posting.slots import Slots
    from buzzbotd.price import PriceClient
    from buzzbotd.sheets.sync import SheetsSync
    from buzzbotd.telegram import TelegramBot
    from buzzbotd.web.server import WebServer

log = logging.getLogger("buzzbotd")
EXIT_LOST_LEADERSHIP = 1    # systemd restarts the unit; it comes back as a standby


@dataclass
class Built:
    prices: PriceClient | None = None
    poster: Slots | None = None      # every network's posting of each slot
    bot: TelegramBot | None = None
    sheets: SheetsSync | None = None
    alerts: alerts.Alerts | None = None

    def start_alerts(self, loop: asyncio.AbstractEventLoop,
                     unclean: tuple[bool, datetime | None]) -> Coroutine[Any, Any, None] | None:
        """In the loop, once it runs: the alerts listen; returns their watch (a
        coroutine for the daemon to run), or None with alerts off."""
        if self.alerts is None:
            return None
        self.alerts.attach(loop)
        if unclean[0]:
            self.alerts.unclean_start(unclean[1])
        return self.alerts.watch()


def build(s: Settings, owner: DatabaseOwner, clock: Callable[[], datetime],
          scheduler: Scheduler, report: Callable[[], dict[str, Any]],
          refresh_status: Callable[[], Awaitable[None]],
          refresh_status_soon: Callable[[], None]) -> Built:
    built = Built()
    if s.networks() or s.telegram.enabled:
        from buzzbotd.price import PriceClient
        built.prices = PriceClient(s.price, clock=clock)
    if s.networks():
        from buzzbotd.posting import slots
        built.poster = slots.build(s, owner, built.prices, clock)
    if s.telegram.enabled:
        from buzzbotd.telegram import TelegramBot
        # Reminders wait while the bot is not connected: a round at once when it is.
        bot = built.bot = TelegramBot(
            s, owner, built.prices, built.poster, report, clock=clock,
            on_state_change=refresh_status,
            on_connected=lambda: scheduler.run_now("reminders", bot.dispatch_reminders))
        if built.poster is not None and s.telegram.channel:
            built.poster.add_channel(bot.app.post_to_channel)
        if s.telegram.alert_admins and s.telegram.admin_ids:   # /alerts says so too
            built.alerts = alerts.Alerts(s.telegram.admin_ids, owner, bot.send_alert)
    if s.sheets.enabled:
        from buzzbotd.sheets.sync import SheetsSync  # gspread and google-auth: only when on
        built.sheets = SheetsSync(s, owner, clock=clock, on_change=refresh_status_soon)
    return built


def bind_http(s: Settings, owner: DatabaseOwner, health: Health,
              clock: Callable[[], datetime], role: Callable[[], str | None]
              ) -> WebServer | None:
    """Before READY: a bad or busy http.listen stops the start (exit 1, naming it)."""
    if s.http.address is None:
        # python-telegram-bot imports tornado for its webhook server whenever it is
        # installed (+3 MiB); with [http] off nothing here uses it, so keep it out.
        sys.modules.setdefault("tornado", None)  # type: ignore[arg-type]
        return None
    from buzzbotd.web.server import WebServer  # tornado and prometheus_client only when on
    web = WebServer(s, owner, health, clock, role=role)
    log.info("http: listening on %s", web.bind())
    return web


class Jobs:
    """The scheduler and what its jobs run. It stops while the loop still turns,
    so a job that is sending through the bot can finish; the poster stops waiting
    between retries (an open slot is settled at the next start) and the bot starts
    no new reminder (those not sent stay due for the next start)."""

    name = "jobs"

    def __init__(self, scheduler: Scheduler, built: Built, stop_s: float, clock: Clock) -> None:
        self.scheduler = scheduler
        self.clock = clock
        self.built = built
        self.stop_s = stop_s

    def start(self) -> None:
        self.scheduler.start()

    def schedule(self, settings: Settings, owner: DatabaseOwner) -> None:
        """The jobs, and at once what came due while the daemon was down (catch-up)."""
        b, scheduler = self.built, self.scheduler

        def backup_if_due() -> None:
            path = owner.backup_if_due(self.clock())
            if path is not None:
                log.info("database backed up to %s", path)

        if b.poster is not None:
            scheduler.at_instants("x-slots", b.poster.next_slot, b.poster.run_due)
        if b.bot is not None:
            scheduler.every_minute("reminders", b.bot.dispatch_reminders)
            scheduler.every(settings.telegram.alert_check_s, "price-alerts",
                            b.bot.check_alerts)
        if owner.takes_backups:      # PostgreSQL: the operator's pg_dump
            scheduler.every(3600, "backup", backup_if_due)
        if b.sheets is not None:
            scheduler.every(settings.sheets.interval_s, "sheets", b.sheets.run)
        if b.poster is not None:
            scheduler.run_now("x-slots", b.poster.run_due)
        if b.bot is not None:           # crossings recorded before a restart go out now
            scheduler.run_now("price-alerts", b.bot.check_alerts)
        if owner.takes_backups:
            scheduler.run_now("backup", backup_if_due)
        if b.sheets is not None:
            scheduler.run_now("sheets", b.sheets.run)

    async def stop(self, deadline: float) -> None:
        for part in (self.built.poster, self.built.sheets):
            if part is not None:
                part.stop()
        if self.built.bot is not None:
            self.built.bot.stop_sending()
        await in_thread(lambda: self.scheduler.stop(max(deadline - time.monotonic(), 0)),
                        "stop-jobs")


class ClockGate:
    """Nothing is posted, sent, skipped or recorded until the clock is sane (not
    earlier than this build); meanwhile the part "clock" is degraded (STATUS=)."""

    PART = "clock"
    CHECK_S = 1.0      # how often an unsynchronised clock is looked at again

    def __init__(self, clock: Clock, built: datetime, health: Health) -> None:
        self.clock = clock
        self.built = built
        self.health = health

    def check(self) -> bool:
        now = self.clock()
        if is_sane(now, self.built):
            self.health.recover(self.PART)
            return True
        if self.PART not in self.health.degraded():
            log.warning("the clock reads %s, earlier than this build (%s): not set yet "
                        "(no NTP fix?); nothing is posted or sent until it is", utc_text(now),
                        utc_text(self.built))
        self.health.degrade(self.PART, f"it reads {utc_text(now)}, earlier than this build "
                                       f"({utc_text(self.built)[:10]}); is NTP working?")
        return False

    async def wait(self) -> None:
        # Found unset before READY: say when it is set, even if that was already so.
        if self.PART in self.health.degraded() or not self.check():
            while not self.check():
                await asyncio.sleep(self.CHECK_S)
            log.info("the clock is set now (%s); starting work", utc_text(self.clock()))


class Leading:
    """This daemon's leadership (a Part): on PostgreSQL one leader among the
    daemons on the database (buzzbotd.db.leadership), a standby waits; on SQLite
    (one daemon, the pid lock) it always leads."""

    name = "leadership"

    def __init__(self, owner: DatabaseOwner, clock: Clock, say: Callable[[str], None],
                 on_gained: Callable[[], None], stop_s: float) -> None:
        self.stop_s = stop_s
        self._say = say                 # STATUS=, the last word before exiting
        self._on_gained = on_gained
        self._leading = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.leadership = owner.leadership(on_gained=self._gained, on_lost=self._lost,
                                           wall=clock)

    def start(self) -> None:
        if self.leadership is not None:
            self.leadership.start()

    @property
    def is_leader(self) -> bool:
        return self.leadership is None or self.leadership.is_leader

    def role(self) -> str | None:
        """"leader" or "standby" on PostgreSQL, None on SQLite."""
        if self.leadership is None:
            return None
        return "leader" if self.leadership.is_leader else "standby"

    def standby_line(self) -> str | None:
        """A standby's STATUS= line (the leader writes the heartbeat), else None."""
        if self.leadership is None or self.leadership.is_leader:
            return None
        return self.leadership.status_line()

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        if self.is_leader:
            self._leading.set()

    async def wait(self) -> bool:
        """Returns once this daemon leads: True if it had to wait (a standby)."""
        if self._leading.is_set():
            return False
        log.info("standing by: %s", self.standby_line())
        await self._leading.wait()
        return True

    def _gained(self) -> None:
        """From the leadership thread: a standby took over (or the first try won)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._leading.set)
            self._on_gained()

    def _lost(self, reason: str) -> None:
        """From the leadership thread: stop acting now. Ending the process is the one
        stop that no getUpdates, POST or send in flight outlives; systemd restarts it
        (Restart=on-failure) and it comes back as a standby."""
        self._say(f"leadership lost ({reason}); exiting to come back as a standby")
        logging.shutdown()
        os._exit(EXIT_LOST_LEADERSHIP)

    async def stop(self, deadline: float) -> None:
        if self.leadership is not None:
            await in_thread(self.leadership.stop, "stop-leadership")


class TheBot:
    """The Telegram bot: polls from `run()` (once the daemon may work) to its stop."""

    name = "the bot"

    def __init__(self, bot: TelegramBot, stop_s: float) -> None:
        self.bot = bot
        self.stop_s = stop_s
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        pass            # the daemon starts run() once the clock is set and it leads

    def run(self, health: Health) -> asyncio.Task:
        self.task = asyncio.get_running_loop().create_task(self.bot.run(health),
                                                           name="telegram")
        return self.task

    async def stop(self, deadline: float) -> None:
        await self.bot.stop(self.task)


class Http:
    name = "http"

    def __init__(self, web: WebServer, stop_s: float) -> None:
        self.web = web
        self.stop_s = stop_s

    def start(self) -> None:
        self.web.serve()

    async def stop(self, deadline: float) -> None:
        await self.web.stop()


class CleanStop:
    """Stopped after the jobs, the bot and HTTP: the next start tells a clean stop
    from a crash by this marker."""

    name = "clean stop"

    def __init__(self, owner: DatabaseOwner, stop_s: float) -> None:
        self.owner = owner
        self.stop_s = stop_s

    def start(self) -> None:
        pass

    async def stop(self, deadline: float) -> None:
        try:
            await self.owner.run(alerts.mark_stopped)
        except Exception as e:  # noqa: BLE001 - the stop goes on regardless
            log.warning("could not record the clean stop: %s", e or type(e).__name__)
