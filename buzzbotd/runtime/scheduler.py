"""Timed jobs: the `schedule` library keeps the jobs, our code decides *when*.

All scheduling is in UTC instants (SPEC): `schedule` itself computes next
runs in the host's naive local time and compares them with
`datetime.datetime.now()`, so on a host set to Europe/Berlin its
`every().minute.at(":00")` goes quiet for an hour at the October fall-back
and a daily job in the repeated hour fires early and then on every pass. Here
every job is a `_ClockedJob`: its next run is an aware UTC instant computed by
our code (`timeofday` for local times of day, DST-correct), and it is due when
the injected clock says so. `schedule` keeps the job list, the ordering and
the run/reschedule cycle; nothing of it that reads the host's clock is used.

The scheduler thread sleeps until the next job is due (or until it must beat
for the watchdog), then hands due jobs to a small pool of worker threads, so
a slow job never delays another. A job never raises into `schedule` (which
would re-fire it on every tick): its exception is logged once, with the
traceback, and counted. A job still running when it is due again is not
started twice: the second run is coalesced into one more run right after.

The wall clock may jump (NTP stepping a Pi's clock, a suspend). Forward: every
job whose instant was skipped runs once, at once. Backward: every job's next
run is computed again from the new reading, so none sits idle until the old
instant comes round. Neither repeats a slot or a reminder: `schedule` knows
nothing of what was done or missed, nor of exactly-once; the X ledger and the
reminder table own that. Jobs take their `now` from the injected clock
(buzzbotd.clock; BUZZBOTD_TEST_CLOCK in a daemon), so a test moves that clock
to a minute or a slot instead of waiting for it.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import schedule

from buzzbotd import testhooks
from buzzbotd.clock import Clock, utc_now
from buzzbotd.runtime.lifecycle import WorkerPool

__all__ = ["Scheduler", "utc_now"]
log = logging.getLogger("buzzbotd.scheduler")
NextInstant = Callable[[dt.datetime], dt.datetime | None]
NEVER = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)
# A wall clock that moved this much more or less than the monotonic clock in one
# pass of the thread has jumped (a pass itself takes milliseconds).
JUMP_S = 2.0


def next_minute(now: dt.datetime) -> dt.datetime:
    """Second :00 of the UTC minute after `now`."""
    return now.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)


class _ClockedJob(schedule.Job):
    """A schedule Job whose next run is an aware UTC instant computed by our own
    code, due by the injected clock (see the module's doc)."""

    def __init__(self, scheduler: schedule.Scheduler, next_instant: NextInstant,
                 clock: Clock) -> None:
        super().__init__(1, scheduler)
        self._next_instant = next_instant
        self._clock = clock

    def _schedule_next_run(self) -> None:
        instant = self._next_instant(self._clock())
        self.next_run = instant.astimezone(dt.UTC) if instant else NEVER

    @property
    def should_run(self) -> bool:
        return self._clock() >= self.next_run

    def run(self) -> Any:
        result = self.job_func()
        self.last_run = self._clock()
        self._schedule_next_run()
        return result

    def __repr__(self) -> str:
        return f"<job {getattr(self.job_func, '__name__', '?')} next {self.next_run}>"


class _ClockedSchedule(schedule.Scheduler):
    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self._clock = clock

    @property
    def idle_seconds(self) -> float | None:
        next_run = self.next_run
        return None if next_run is None else (next_run - self._clock()).total_seconds()


class Scheduler:
    """The scheduler thread plus its worker pool."""

    def __init__(self, beat: Callable[[], None] = lambda: None, beat_every_s: float = 5.0,
                 workers: int = 4, clock: Clock = utc_now) -> None:
        self._schedule = _ClockedSchedule(clock)
        self._beat = beat
        self.beat_every_s = beat_every_s
        self._workers = workers
        self._clock = clock
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._running: set[str] = set()
        self._rerun: set[str] = set()
        self._lock = threading.Lock()
        self.failures: dict[str, int] = {}
        self.passes = 0                 # passes of the thread's loop (tests wait on it)
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._pool: WorkerPool | None = None

    # -- adding jobs -----------------------------------------------------

    def every(self, seconds: float, name: str, fn: Callable[[], object]) -> None:
        """Runs fn every `seconds`."""
        self.at_instants(name, lambda now: now + dt.timedelta(seconds=seconds), fn)

    def every_minute(self, name: str, fn: Callable[[], object]) -> None:
        """Runs fn at second :00 of every UTC minute."""
        self.at_instants(name, next_minute, fn)

    def at_instants(self, name: str, next_instant: NextInstant, fn: Callable[[], object]) -> None:
        """Runs fn at each instant next_instant(now) returns (aware datetimes; None: never)."""
        job = _ClockedJob(self._schedule, next_instant, self._clock)
        job.do(self._dispatch, name, fn).tag(name)
        self._wake.set()

    def reschedule(self, name: str | None = None) -> None:
        """Recomputes the next run of the jobs named `name` (all if None) from now."""
        for job in self._schedule.get_jobs(name):
            job._schedule_next_run()
        self._wake.set()

    def wake(self) -> None:
        """Makes the thread look at the clock now (a test moved it)."""
        self._wake.set()

    def running(self) -> set[str]:
        """Names of the jobs running now."""
        with self._lock:
            return set(self._running)

    # -- life cycle ------------------------------------------------------

    def start(self) -> None:
        self._pool = WorkerPool(self._workers)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> list[str]:
        """Takes no new jobs; running jobs get `timeout` seconds in all to finish.
        Returns those abandoned (left to the next start: the ledger and the
        reminder table know what they did not finish)."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(max(deadline - time.monotonic(), 0))
        busy = self._pool.shutdown(timeout=max(deadline - time.monotonic(), 0)) \
            if self._pool else []
        if busy:
            log.warning("jobs still running at shutdown, abandoned: %s",
                        ", ".join(sorted(self.running())) or ", ".join(busy))
        return busy

    def run_now(self, name: str, fn: Callable[[], object]) -> Future | None:
        """Runs fn in the pool at once (e.g. catch-up at start, /tweet)."""
        return self._dispatch(name, fn)

    # -- the thread ------------------------------------------------------

    def _loop(self) -> None:
        last = (time.monotonic(), self._clock())
        while not self._stop.is_set():
            self._wake.clear()          # before the clock is read: a wake() from now on counts
            self._beat()
            testhooks.maybe_hang("scheduler")
            now = (time.monotonic(), self._clock())
            jump = (now[1] - last[1]).total_seconds() - (now[0] - last[0])
            last = now
            if jump < -JUMP_S:
                log.warning("the wall clock went back %.0fs; next runs computed again", -jump)
                self.reschedule()
            elif jump > JUMP_S:
                log.info("the wall clock jumped ahead %.0fs; what came due runs now", jump)
            self._schedule.run_pending()
            self.passes += 1
            idle = self._schedule.idle_seconds
            wait = self.beat_every_s if idle is None else min(max(idle, 0.0), self.beat_every_s)
            self._wake.wait(wait)

    def _dispatch(self, name: str, fn: Callable[[], object]) -> Future | None:
        with self._lock:
            if self._stop.is_set():
                return None
            if name in self._running:
                log.debug("job %s is still running; it runs again when done", name)
                self._rerun.add(name)
                return None
            self._running.add(name)
        assert self._pool is not None, "scheduler not started"
        future = self._pool.submit(fn)
        future.add_done_callback(lambda f: self._finished(name, fn, f))
        return future

    def _finished(self, name: str, fn: Callable[[], object], future: Future) -> None:
        with self._lock:
            self._running.discard(name)
            again = name in self._rerun and not self._stop.is_set()
            self._rerun.discard(name)
        if again:
            self._dispatch(name, fn)
        error = None if future.cancelled() else future.exception()
        if error is not None:
            self.failures[name] = self.failures.get(name, 0) + 1
            log.error("job %s failed (%d so far)", name, self.failures[name],
                      exc_info=(type(error), error, error.__traceback__))
