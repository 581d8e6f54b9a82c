"""The composition root: starts the parts in order and stops them in reverse.

    lock → state dir → database owner (open, check, migrate) → X poster →
    Telegram bot (initialised in the main thread's event loop) → scheduler →
    watchdog → READY=1

On SIGTERM/SIGINT: STOPPING=1, the scheduler takes no new jobs and running
ones get JOB_GRACE_S, the bot stops polling, the database owner checkpoints
and closes, the lock is released, exit 0.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from collections.abc import Callable
from datetime import datetime
from typing import Any

from buzzbotd import __version__, faults, state, status
from buzzbotd.config import Settings
from buzzbotd.db import DatabaseOwner
from buzzbotd.db.models import utc_text
from buzzbotd.lock import PidLock
from buzzbotd.notify import Health, Notifier, Watchdog
from buzzbotd.scheduler import Scheduler, utc_now

log = logging.getLogger("buzzbotd")
JOB_GRACE_S = 5.0


class Daemon:
    def __init__(self, settings: Settings, environ: dict[str, str] | None = None,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.settings = settings
        clock = faults.shifted(clock)      # test-only: BUZZBOTD_TEST_CLOCK
        self.clock = clock
        self.notifier = Notifier(environ)
        self.health = Health()
        self.lock = PidLock(settings.daemon.lock_file)
        # Beat often enough that a hung scheduler is noticed within one watchdog interval.
        interval = self.notifier.watchdog_interval or 30.0
        self.health.register("scheduler", max_age_s=interval)
        self.scheduler = Scheduler(beat=lambda: self.health.beat("scheduler"),
                                   beat_every_s=interval / 3, clock=clock)
        self.owner = DatabaseOwner(settings.daemon.database)
        self.watchdog = Watchdog(self.notifier, self.health, self._ping_database,
                                 self._status_text)
        self.prices: Any = None
        self.poster: Any = None
        self.bot: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop_main: Callable[[], None] = lambda: None
        self._stopping = False
        self._tasks: set[asyncio.Task] = set()

    # -- the whole life ----------------------------------------------------

    def run(self) -> int:
        faults.warn_if_set()
        self.lock.acquire()
        try:
            log.info("buzzbotd %s starting (pid %d, config %s)", __version__, os.getpid(),
                     self.settings.path)
            self._start_storage()
            self._build_parts()
            if self.bot is not None:
                self._stop_main = self.bot.stop_running
                self.bot.run(on_started=self._started)       # run_polling, main thread
            else:
                asyncio.run(self._run_without_bot())
        finally:
            self._stop_threads()
            self.lock.release()
        log.info("stopped")
        return 0

    def _start_storage(self) -> None:
        self.settings.daemon.state_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        applied = self.owner.start()
        first = self.owner.call(state.first_start, self.clock())
        log.info("database %s open (migrations applied: %s; first start %s)",
                 self.settings.daemon.database, applied or "none", utc_text(first))

    def _build_parts(self) -> None:
        s = self.settings
        if s.x.enabled or s.telegram.enabled:
            from buzzbotd.price import PriceClient
            self.prices = PriceClient(s.price)
        if s.x.enabled:
            from buzzbotd.x import Poster  # tweepy is imported only when X is on
            self.poster = Poster(s, self.owner, self.prices, clock=self.clock)
        if s.telegram.enabled:
            from buzzbotd.telegram_bot import TelegramBot
            self.bot = TelegramBot(s, self.owner, self.prices, self.poster, self.report,
                                   clock=self.clock)
            self.bot.on_state_change = self.watchdog.refresh_status

    async def _run_without_bot(self) -> None:
        stop = asyncio.Event()
        self._stop_main = stop.set
        await self._started()
        await stop.wait()

    async def _started(self) -> None:
        """Runs in the main event loop once the bot (if any) is initialised and polling."""
        self.loop = asyncio.get_running_loop()
        if self.bot is not None:
            self.bot.attach_loop(self.loop)
        self._schedule_jobs()
        self.scheduler.start()
        self._catch_up()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self._on_signal, sig)
        self._spawn(self.watchdog.loop(), "watchdog")
        after = faults.hang_after("loop")
        if after is not None:
            self.loop.call_later(after, faults.maybe_hang, "loop")
        report = await asyncio.wrap_future(self.owner.submit(self._heartbeat_report))
        line = status.status_line(report)
        self.notifier.ready(line)
        gc.freeze()     # what start-up built lives as long as the process (see cli.cmd_run)
        gc.enable()
        log.info("%s", line)

    def _schedule_jobs(self) -> None:
        if self.poster is not None:
            self.scheduler.at_instants("x-slots", self.poster.next_slot, self.poster.run_due)
        if self.bot is not None:
            self.scheduler.every_minute("reminders", self.bot.dispatch_reminders)
        self.scheduler.every(3600, "backup", self._backup_if_due)

    def _catch_up(self) -> None:
        """What came due while the daemon was down is settled at once, not at the next tick."""
        if self.poster is not None:
            self.scheduler.run_now("x-slots", self.poster.run_due)
        if self.bot is not None:
            self.scheduler.run_now("reminders", self.bot.dispatch_reminders)
        self.scheduler.run_now("backup", self._backup_if_due)

    # -- stopping ----------------------------------------------------------

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._stopping:
            return
        self._stopping = True
        log.info("%s received, stopping", sig.name)
        self.notifier.stopping()
        self._spawn(self._shutdown(), "shutdown")

    async def _shutdown(self) -> None:
        # The scheduler stops while the loop still turns, so a job that is
        # sending through the bot can finish; the poster stops waiting between
        # retries (an open slot is settled at the next start) and the bot starts
        # no new reminder (those not sent stay due for the next start).
        if self.poster is not None:
            self.poster.stop()
        if self.bot is not None:
            self.bot.stop_sending()
        await asyncio.to_thread(self.scheduler.stop, JOB_GRACE_S)
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()
        self._stop_main()

    def _stop_threads(self) -> None:
        self.scheduler.stop(JOB_GRACE_S)
        self.owner.stop()

    # -- helpers -----------------------------------------------------------

    def _spawn(self, coroutine: Any, name: str) -> None:
        assert self.loop is not None
        task = self.loop.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def report(self) -> dict[str, Any]:
        """The status report; runs inside the database owner."""
        return status.collect(self.settings, self.clock())

    def _heartbeat_report(self) -> dict[str, Any]:
        state.put_many({state.HEARTBEAT: utc_text(self.clock()),
                        state.HEALTH: "; ".join(self.watchdog.problems)})
        return self.report()

    async def _ping_database(self) -> None:
        await asyncio.wrap_future(self.owner.ping())

    async def _status_text(self) -> str:
        report = await asyncio.wrap_future(self.owner.submit(self._heartbeat_report))
        return status.status_line(report)

    def _backup_if_due(self) -> None:
        today = self.clock()
        target = self.owner.backup_dir / f"buzzbotd-{today:%Y-%m-%d}.db"
        if not target.exists():
            path = self.owner.backup(today)
            log.info("database backed up to %s", path)
