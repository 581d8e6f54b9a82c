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
What is still running then is abandoned, never waited for: jobs and blocking
calls (a /price on a slow price API) run in daemon threads, and the ledger
and the reminder table settle at the next start what they did not finish
(a slot left `sending` is looked up on X before any retry). Then the lock is
released and the exit code is 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Coroutine
from datetime import datetime
from typing import TYPE_CHECKING, Any

from buzzbotd import __version__, testhooks
from buzzbotd.clock import Clock, build_date, from_environment, is_sane
from buzzbotd.config import Settings
from buzzbotd.db import meta, open_owner
from buzzbotd.db.models import utc_text
from buzzbotd.ops import alerts, status
from buzzbotd.ops.health import HEALTH
from buzzbotd.runtime.lifecycle import Awaited, Parts, Stopped, WorkerPool, in_thread
from buzzbotd.runtime.lock import PidLock
from buzzbotd.runtime.notify import Notifier
from buzzbotd.runtime.scheduler import Scheduler
from buzzbotd.runtime.watchdog import Watchdog

if TYPE_CHECKING:
    from buzzbotd.db.leadership import Leadership
    from buzzbotd.posting.poster import Poster
    from buzzbotd.price import PriceClient
    from buzzbotd.sheets.sync import SheetsSync
    from buzzbotd.telegram import TelegramBot
    from buzzbotd.web.server import WebServer

log = logging.getLogger("buzzbotd")
# The stop budget: these add up to STOP_BUDGET_S, against TimeoutStopSec=15.
JOB_GRACE_S = 4.0        # running jobs: a slot's POST, a reminder round
BOT_STOP_S = 3.0         # the bot: reminders in flight, the last getUpdates, closing
EXIT_LOST_LEADERSHIP = 1    # systemd restarts the unit; it comes back as a standby
OWNER_STOP_S = 2.0       # the database owner: the queued work, checkpoint, close
LOOP_CLOSE_S = 1.0       # tasks still in the loop
STOP_BUDGET_S = JOB_GRACE_S + BOT_STOP_S + OWNER_STOP_S + LOOP_CLOSE_S
BLOCKING_THREADS = 8     # the loop's executor (asyncio.to_thread): /price, /tweet
CLOCK_CHECK_S = 1.0      # how often an unsynchronised clock is looked at again
CLOCK = "clock"          # its part name in ops.health


class Daemon:
    def __init__(self, settings: Settings, environ: dict[str, str] | None = None,
                 clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or from_environment(environ)
        self.launched = self.clock()        # see _start_work: the first start
        self.built = build_date()
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
        self.parts = Parts()
        self.leadership: Leadership | None = None
        self.watchdog = Watchdog(self.notifier, self.health, self._ping_database,
                                 self._status_text)
        self.prices: PriceClient | None = None
        self.poster: Poster | None = None
        self.bot: TelegramBot | None = None
        self.sheets: SheetsSync | None = None
        self.web: WebServer | None = None
        self.alerts: alerts.Alerts | None = None
        self._unclean_start: tuple[bool, datetime | None] = (False, None)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._leading = asyncio.Event()
        self._stop_started: float | None = None
        self._stop_main = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._bot_task: asyncio.Task | None = None
        self._executor: WorkerPool | None = None

    # -- the whole life ----------------------------------------------------

    def run(self) -> int:
        testhooks.warn_if_set()
        self.lock.acquire()
        try:
            log.info("buzzbotd %s starting (pid %d, config %s)", __version__, os.getpid(),
                     self.settings.path)
            self._start_storage()
            self._bind_http()
            self._build_parts()
            # Our own loop rather than asyncio.run(): that one waits, at its end,
            # for every thread of the default executor (a /price stuck on the
            # price API), without a bound.
            loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(self._main())
            finally:
                self._close_loop(loop)
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
        # PostgreSQL: one leader among the daemons on the database; SQLite: None.
        self.leadership = self.owner.leadership(
            on_gained=self._leadership_gained, on_lost=self._leadership_lost, wall=self.clock)
        if self.leadership is not None:
            leadership = self.leadership
            self.parts.start(Stopped("leadership", lambda _: leadership.stop(), OWNER_STOP_S,
                                     start=leadership.start))
            if not leadership.is_leader:
                return        # the rest waits for leadership (_start_work)
        self._leading.set()
        self._unclean_start = self.owner.call(alerts.mark_running)
        if self._unclean_start[0]:
            log.warning("the previous run did not stop cleanly (crash, watchdog restart or "
                        "power loss); last heartbeat %s", self._unclean_start[1] or "unknown")

    def _open_database(self) -> None:
        applied = self.owner.start()
        log.info("database %s open (migrations applied: %s)",
                 self.settings.database.describe(self.settings.daemon.database),
                 applied or "none")

    def _leadership_gained(self) -> None:
        """From the leadership thread: a standby took over (or the first try won)."""
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._leading.set)
            self._refresh_status_soon()

    def _leadership_lost(self, reason: str) -> None:
        """From the leadership thread: stop acting now. Ending the process is the one
        stop that no getUpdates, POST or send in flight outlives; systemd restarts it
        (Restart=on-failure) and it comes back as a standby."""
        self.notifier.status(f"leadership lost ({reason}); exiting to come back as a standby")
        logging.shutdown()
        os._exit(EXIT_LOST_LEADERSHIP)

    def _build_parts(self) -> None:
        s = self.settings
        if s.x.enabled or s.telegram.enabled:
            from buzzbotd.price import PriceClient
            self.prices = PriceClient(s.price, clock=self.clock)
        if s.x.enabled:
            from buzzbotd.posting.poster import Poster  # tweepy is imported only when X is on
            self.poster = Poster(s, self.owner, self.prices, clock=self.clock)
        if s.telegram.enabled:
            from buzzbotd.telegram import TelegramBot
            bot = self.bot = TelegramBot(s, self.owner, self.prices, self.poster, self.report,
                                         clock=self.clock)
            bot.on_state_change = self.watchdog.refresh_status
            # Reminders wait while the bot is not connected: a round at once when it is.
            bot.on_connected = lambda: self.scheduler.run_now("reminders",
                                                              bot.dispatch_reminders)
            if s.telegram.alert_admins and s.telegram.admin_ids:
                self.alerts = alerts.Alerts(s.telegram.admin_ids, self.owner, bot.send_alert)
                bot.alerts_enabled = True
        if s.sheets.enabled:
            from buzzbotd.sheets.sync import SheetsSync  # gspread and google-auth: only when on
            self.sheets = SheetsSync(s, self.owner, clock=self.clock)
            self.sheets.on_change = self._refresh_status_soon

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
        self.parts.start(Awaited("clean stop", self._record_clean_stop, LOOP_CLOSE_S))
        if self.web is not None:
            self.parts.start(Awaited("http", self.web.stop, LOOP_CLOSE_S, start=self.web.serve))
        if self.bot is not None:
            bot = self.bot
            self.parts.start(Awaited("the bot", lambda: bot.stop(self._bot_task), BOT_STOP_S))
        self.parts.start(Awaited("jobs", self._stop_jobs, JOB_GRACE_S,
                                 start=self.scheduler.start))
        self._spawn(self.watchdog.loop(), "watchdog")
        self._start_alerts()
        after = testhooks.hang_after("loop")
        if after is not None:
            loop.call_later(after, testhooks.maybe_hang, "loop")
        self._check_clock()
        if self.leadership is None or self.leadership.is_leader:
            self._leading.set()
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

    def _check_clock(self) -> bool:
        """True if the clock is sane; else the part "clock" is degraded (STATUS=)."""
        now = self.clock()
        if is_sane(now, self.built):
            self.health.recover(CLOCK)
            return True
        if CLOCK not in self.health.degraded():
            log.warning("the clock reads %s, earlier than this build (%s): not set yet "
                        "(no NTP fix?); nothing is posted or sent until it is", utc_text(now),
                        utc_text(self.built))
        self.health.degrade(CLOCK, f"it reads {utc_text(now)}, earlier than this build "
                                   f"({utc_text(self.built)[:10]}); is NTP working?")
        return False

    async def _start_work(self) -> None:
        """Once the clock is sane and this daemon leads: the first start, the jobs,
        catch-up, the bot. A standby waits here (no polling, posting or sending)."""
        if not self._leading.is_set():
            assert self.leadership is not None
            log.info("standing by: %s", self.leadership.status_line())
            await self._leading.wait()
            self._unclean_start = await self.owner.run(alerts.mark_running)
        # Found unset before READY: say when it is set, even if that was already so.
        if CLOCK in self.health.degraded() or not self._check_clock():
            while not self._check_clock():
                await asyncio.sleep(CLOCK_CHECK_S)
            log.info("the clock is set now (%s); starting work", utc_text(self.clock()))
        # A slot that fell due while this start opened the database (seconds on a
        # Pi's SD card) is this daemon's: its first start is when it was launched,
        # or, if the clock was not set then, when it was.
        since = self.launched if is_sane(self.launched, self.built) else self.clock()
        first = await self.owner.run(meta.first_start, since)
        log.info("first start %s", utc_text(first))
        self._schedule_jobs()
        if self.bot is not None:
            self._bot_task = self._spawn(self.bot.run(self.health), "telegram")

    def _schedule_jobs(self) -> None:
        """The jobs, and at once what came due while the daemon was down (catch-up)."""
        if self.poster is not None:
            self.scheduler.at_instants("x-slots", self.poster.next_slot, self.poster.run_due)
        if self.bot is not None:
            self.scheduler.every_minute("reminders", self.bot.dispatch_reminders)
        if self.owner.takes_backups:      # PostgreSQL: the operator's pg_dump
            self.scheduler.every(3600, "backup", self._backup_if_due)
        if self.sheets is not None:
            self.scheduler.every(self.settings.sheets.interval_s, "sheets", self.sheets.run)
        if self.poster is not None:
            self.scheduler.run_now("x-slots", self.poster.run_due)
        if self.owner.takes_backups:
            self.scheduler.run_now("backup", self._backup_if_due)
        if self.sheets is not None:
            self.scheduler.run_now("sheets", self.sheets.run)

    # -- the operator's window: HTTP and alerts (SPEC "HTTP", "Alerts to admins") ----

    def _bind_http(self) -> None:
        """Before READY: a bad or busy http.listen stops the start (exit 1, naming it)."""
        if self.settings.http.address is None:
            # python-telegram-bot imports tornado for its webhook server whenever it is
            # installed (+3 MiB); with [http] off nothing here uses it, so keep it out.
            sys.modules.setdefault("tornado", None)  # type: ignore[arg-type]
            return
        from buzzbotd.web.server import WebServer  # tornado and prometheus_client only when on
        self.web = WebServer(self.settings, self.owner, self.health, self.clock,
                             role=self._role)
        log.info("http: listening on %s", self.web.bind())

    def _start_alerts(self) -> None:
        """In the loop, once it runs: watch for what admins must hear."""
        if self.alerts is not None:
            assert self.loop is not None
            self.alerts.attach(self.loop)
            self._spawn(self.alerts.watch(), "alerts")
            if self._unclean_start[0]:
                self.alerts.unclean_start(self._unclean_start[1])

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

    async def _stop_jobs(self) -> None:
        """The scheduler stops while the loop still turns, so a job that is sending
        through the bot can finish; the poster stops waiting between retries (an
        open slot is settled at the next start) and the bot starts no new reminder
        (those not sent stay due for the next start)."""
        for part in (self.poster, self.sheets):
            if part is not None:
                part.stop()
        if self.bot is not None:
            self.bot.stop_sending()
        await in_thread(lambda: self.scheduler.stop(JOB_GRACE_S), "stop-jobs")

    async def _record_clean_stop(self) -> None:
        """The next start tells a clean stop from a crash by this marker."""
        try:
            await self.owner.run(alerts.mark_stopped)
        except Exception as e:  # noqa: BLE001 - the stop goes on regardless
            log.warning("could not record the clean stop: %s", e or type(e).__name__)

    def _close_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Cancels what is left in the loop, gives it LOOP_CLOSE_S, closes the loop.
        Threads of its executor still busy are abandoned (daemon threads)."""
        with contextlib.suppress(Exception):
            tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.wait(tasks, timeout=LOOP_CLOSE_S))
            loop.run_until_complete(asyncio.wait_for(loop.shutdown_asyncgens(), LOOP_CLOSE_S))
        if self._executor is not None:
            busy = self._executor.shutdown(timeout=0)
            if busy:
                log.warning("blocking calls still running at exit, abandoned: %s",
                            ", ".join(busy))
        loop.close()

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

    def _heartbeat_report(self) -> dict[str, Any]:
        meta.put_many({meta.HEARTBEAT: utc_text(self.clock()),
                       meta.HEALTH: "; ".join(self.health.hung),
                       meta.DEGRADED: status.degraded_meta(self.health.degraded())})
        return self.report()

    def _refresh_status_soon(self) -> None:
        """From a job thread: STATUS= shows a change now, not at the next refresh."""
        if self.loop is not None and self._stop_started is None:
            asyncio.run_coroutine_threadsafe(self.watchdog.refresh_status(), self.loop)

    def _role(self) -> str | None:
        if self.leadership is None:
            return None
        return "leader" if self.leadership.is_leader else "standby"

    async def _ping_database(self) -> None:
        await asyncio.wrap_future(self.owner.ping())

    async def _status_text(self) -> str:
        if self.leadership is not None and not self.leadership.is_leader:
            return self.leadership.status_line()     # the leader writes the heartbeat
        report = await self.owner.run(self._heartbeat_report)
        return status.status_line(report)

    def _backup_if_due(self) -> None:
        path = self.owner.backup_if_due(self.clock())
        if path is not None:
            log.info("database backed up to %s", path)
