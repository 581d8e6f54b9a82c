"""The composition root: starts the parts in order and stops them in reverse.

    lock → state dir → database owner (open, check, migrate) → X poster and
    Telegram bot (built) → our own event loop in the main thread → scheduler
    thread → watchdog → READY=1 → (the clock is sane) → first start recorded,
    jobs scheduled, catch-up, the bot connects in the background

READY=1 means the lock, the database and the scheduler are up; it never waits
for Telegram (an unreachable Telegram must not stop X posting: the bot keeps
trying in the background, and STATUS= says it is degraded) nor for the clock
(a Pi without its NTP fix would otherwise hit TimeoutStartSec and be
restarted in a loop: it is ready, STATUS= says "waiting for the clock", and
nothing is posted, sent, skipped or recorded until the clock is sane).

On SIGTERM/SIGINT: STOPPING=1, then the shutdown, bounded in all by
STOP_BUDGET_S, well inside the unit's TimeoutStopSec=15 whatever is in flight:
running jobs get JOB_GRACE_S (the poster stops waiting between retries, the bot
starts no new reminder), the bot BOT_STOP_S, the database owner OWNER_STOP_S.
What is still running then is abandoned (daemon threads); the ledger and the
reminder table settle at the next start what they did not finish. Then the
lock is released and the exit code is 0.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import time
from collections.abc import Coroutine
from datetime import datetime
from typing import TYPE_CHECKING, Any

from buzzbotd import __version__, testhooks
from buzzbotd.clock import TRUST, Clock, build_date, from_environment, is_sane
from buzzbotd.config import Settings
from buzzbotd.daemon import parts
from buzzbotd.db import meta, open_owner
from buzzbotd.db.models import utc_text
from buzzbotd.ops import alerts, status
from buzzbotd.ops.health import HEALTH
from buzzbotd.runtime.lifecycle import Parts, Stopped, WorkerPool, close_loop
from buzzbotd.runtime.lock import PidLock
from buzzbotd.runtime.notify import Notifier
from buzzbotd.runtime.scheduler import Scheduler
from buzzbotd.runtime.watchdog import Watchdog

if TYPE_CHECKING:
    from buzzbotd.web.server import WebServer

log = logging.getLogger("buzzbotd")
# The stop budget: these add up to STOP_BUDGET_S, against TimeoutStopSec=15.
JOB_GRACE_S = 4.0        # running jobs: a slot's POST, a reminder round
BOT_STOP_S = 3.0         # the bot: reminders in flight, the last getUpdates, closing
OWNER_STOP_S = 2.0       # the database owner: the queued work, checkpoint, close
LOOP_CLOSE_S = 1.0       # tasks still in the loop
STOP_BUDGET_S = JOB_GRACE_S + BOT_STOP_S + OWNER_STOP_S + LOOP_CLOSE_S
BLOCKING_THREADS = 8     # the loop's executor (asyncio.to_thread): /price, /tweet


class Daemon:
    def __init__(self, settings: Settings, environ: dict[str, str] | None = None,
                 clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or from_environment(environ)
        self.launched = self.clock()        # see _start_work: the first start
        self.built = build_date()
        self.clock_gate = parts.ClockGate(self.clock, self.built, HEALTH)
        self.notifier = Notifier(environ)
        self.health = HEALTH
        self.health.use_wall(self.clock)
        self.lock = PidLock(settings.daemon.lock_file)
        # Beat often enough that a hung scheduler is noticed within one watchdog
        # interval (the arithmetic is in buzzbotd/runtime/watchdog.py).
        interval = self.notifier.watchdog_interval or 30.0
        self.health.register("scheduler", max_age_s=interval)
        self.scheduler = Scheduler(beat=lambda: self.health.beat("scheduler"),
                                   beat_every_s=interval / 3, clock=self.clock)
        self.owner = open_owner(settings)
        self.leading = parts.Leading(self.owner, self.clock, self.notifier.status,
                                     self._refresh_status_soon, OWNER_STOP_S)
        self.parts = Parts()
        self.watchdog = Watchdog(self.notifier, self.health,
                                 lambda: asyncio.wrap_future(self.owner.ping()), self._status_text)
        self.made = parts.Built()
        self.jobs: parts.Jobs | None = None
        self.web: WebServer | None = None
        self.bot: parts.TheBot | None = None
        self._unclean_start: tuple[bool, datetime | None] = (False, None)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop_started: float | None = None
        self._stop_main = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._executor: WorkerPool | None = None

    # -- the whole life ----------------------------------------------------

    def run(self) -> int:
        testhooks.warn_if_set()
        self.lock.acquire()
        try:
            log.info("buzzbotd %s starting (pid %d, config %s)", __version__, os.getpid(),
                     self.settings.path)
            self._start_storage()
            self.web = parts.bind_http(self.settings, self.owner, self.health, self.clock,
                                       self.leading.role)
            self._build_parts()
            # Our own loop rather than asyncio.run(): that one waits, at its end,
            # for every thread of the default executor (a /price stuck on the
            # price API), without a bound.
            loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(self._main())
            finally:
                close_loop(loop, self._executor, LOOP_CLOSE_S)
        finally:
            self.parts.stop_now()           # what is left, if the start failed
            if self._stop_started is not None:
                log.info("shutdown took %.1fs (budget %.0fs)",
                         time.monotonic() - self._stop_started, STOP_BUDGET_S)
            self.lock.release()
        log.info("stopped")
        return 0

    def _start_storage(self) -> None:
        self.settings.daemon.state_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        self.parts.start(Stopped("database owner", self.owner.stop, OWNER_STOP_S,
                                 start=self._open_database))
        self.parts.start(self.leading)
        if not self.leading.is_leader:
            return        # the rest waits for leadership (_start_work)
        self._unclean_start = self.owner.call(alerts.mark_running)
        if self._unclean_start[0]:
            log.warning("the previous run did not stop cleanly (crash, watchdog restart or "
                        "power loss); last heartbeat %s", self._unclean_start[1] or "unknown")

    def _build_parts(self) -> None:
        self.made = parts.build(self.settings, self.owner, self.clock, self.scheduler,
                                self.report, self.watchdog.refresh_status,
                                self._refresh_status_soon)

    def _open_database(self) -> None:
        applied = self.owner.start()
        log.info("database %s open (migrations applied: %s)",
                 self.settings.database.describe(self.settings.daemon.database),
                 applied or "none")

    async def _main(self) -> None:
        """The main thread's event loop, from start to the end of the shutdown."""
        self.loop = loop = asyncio.get_running_loop()
        self._executor = WorkerPool(BLOCKING_THREADS, name="blocking")
        loop.set_default_executor(self._executor)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        self.health.on_change = lambda: loop.call_soon_threadsafe(self._health_changed)
        # Stopped in reverse: the jobs end (JOB_GRACE_S), then the bot, then HTTP,
        # then the clean stop is recorded; the watchdog turns until then.
        self.parts.start(parts.CleanStop(self.owner, LOOP_CLOSE_S))
        if self.web is not None:
            self.parts.start(parts.Http(self.web, LOOP_CLOSE_S))
        if self.made.bot is not None:
            self.bot = parts.TheBot(self.made.bot, BOT_STOP_S)
            self.parts.start(self.bot)
        self.jobs = parts.Jobs(self.scheduler, self.made, JOB_GRACE_S, self.clock)
        self.parts.start(self.jobs)
        self._spawn(self.watchdog.loop(), "watchdog")
        watch = self.made.start_alerts(loop, self._unclean_start)
        if watch is not None:
            self._spawn(watch, "alerts")
        after = testhooks.hang_after("loop")
        if after is not None:
            loop.call_later(after, testhooks.maybe_hang, "loop")
        self.clock_gate.check()
        self.leading.attach(loop)
        line = await self._status_text()
        self.notifier.ready(line)
        gc.freeze()     # what start-up built lives as long as the process (see cli/commands.py)
        gc.enable()
        log.info("%s", line)
        self._spawn(self._start_work(), "start-work")
        await self._stop_main.wait()
        await self.parts.stop()
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()

    async def _start_work(self) -> None:
        """Once the clock is sane and this daemon leads: the first start, the jobs,
        catch-up, the bot. A standby waits here (no polling, posting or sending)."""
        if await self.leading.wait():
            self._unclean_start = await self.owner.run(alerts.mark_running)
        await self.clock_gate.wait()
        # A slot that fell due while this start opened the database (seconds on a
        # Pi's SD card) is this daemon's: its first start is when it was launched,
        # or, if the clock was not set then, when it was.
        since = self.launched if is_sane(self.launched, self.built) else self.clock()
        first = await self.owner.run(meta.first_start, since)
        log.info("first start %s", utc_text(first))
        TRUST.opened(self.clock, self._unclean_start[1])    # a clock far ahead is suspect
        assert self.jobs is not None
        self.jobs.schedule(self.settings, self.owner)
        if self.bot is not None:
            self.bot.run(self.health)

    # -- STATUS= ---------------------------------------------------------------

    def _health_changed(self) -> None:
        """A part became degraded or recovered: STATUS= says so at once."""
        if self._stop_started is None:
            self._spawn(self.watchdog.refresh_status(), "status")

    # -- stopping ----------------------------------------------------------

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._stop_started is not None:
            return
        self._stop_started = time.monotonic()
        log.info("%s received, stopping", sig.name)
        self.notifier.stopping()
        self._stop_main.set()

    # -- helpers -----------------------------------------------------------

    def _spawn(self, coroutine: Coroutine[Any, Any, Any], name: str) -> asyncio.Task:
        assert self.loop is not None
        task = self.loop.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def report(self) -> dict[str, Any]:
        """The status report; runs inside the database owner."""
        return status.collect(self.settings, self.clock())

    def _refresh_status_soon(self) -> None:
        """From a job thread: STATUS= shows a change now, not at the next refresh."""
        if self.loop is not None and self._stop_started is None:
            asyncio.run_coroutine_threadsafe(self.watchdog.refresh_status(), self.loop)

    async def _status_text(self) -> str:
        line = self.leading.standby_line()      # the leader writes the heartbeat
        if line is not None:
            return line
        prices = self.made.prices
        report = await self.owner.run(status.heartbeat, self.settings, self.clock(),
                                      self.health.hung, self.health.degraded(),
                                      prices.last_quote() if prices is not None else None)
        return status.status_line(report)
