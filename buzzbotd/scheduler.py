"""Timed jobs: the `schedule` library decides *when*, a worker pool runs them.

The scheduler thread sleeps until the next job is due (or until it must beat
for the watchdog), then hands due jobs to a small pool of worker threads, so
a slow job never delays another. A job never raises into `schedule` (which
would re-fire it on every tick): its exception is logged once, with the
traceback, and counted. A job still running when it is due again is not
started twice: the second run is coalesced into one more run right after.

`schedule` knows nothing of what was missed while the daemon was down, nor
of exactly-once; the X ledger and the reminder table own that. Jobs take
their `now` from the injected clock, so tests never wait for real minutes.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import schedule

from buzzbotd import faults

log = logging.getLogger("buzzbotd.scheduler")
NextInstant = Callable[[dt.datetime], dt.datetime | None]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class WorkerPool:
    """N named daemon threads running submitted functions; bounded shutdown."""

    def __init__(self, size: int, name: str = "job") -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i + 1}", daemon=True)
                         for i in range(size)]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[[], object]) -> Future:
        future: Future = Future()
        self._queue.put((future, fn))
        return future

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            future, fn = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except Exception as e:  # noqa: BLE001 - reported through the future
                    future.set_exception(e)

    def shutdown(self, timeout: float) -> list[str]:
        """Stops taking work, waits up to `timeout`, returns the threads still busy."""
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0))
        return [t.name for t in self._threads if t.is_alive()]


class _InstantJob(schedule.Job):
    """A schedule Job whose next run is an instant computed by our own code
    (e.g. the next X slot in its IANA timezone, DST-correct)."""

    def __init__(self, scheduler: schedule.Scheduler, next_instant: NextInstant,
                 clock: Callable[[], dt.datetime]) -> None:
        super().__init__(1, scheduler)
        self._next_instant = next_instant
        self._clock = clock

    def _schedule_next_run(self) -> None:
        instant = self._next_instant(self._clock())
        # `schedule` compares with naive local time; None parks the job far away.
        self.next_run = (instant.astimezone().replace(tzinfo=None) if instant
                         else dt.datetime.max.replace(year=9000))

    def __repr__(self) -> str:
        return f"<instant job {getattr(self.job_func, '__name__', '?')} next {self.next_run}>"


class Scheduler:
    """The scheduler thread plus its worker pool."""

    def __init__(self, beat: Callable[[], None] = lambda: None, beat_every_s: float = 5.0,
                 workers: int = 4, clock: Callable[[], dt.datetime] = utc_now) -> None:
        self._schedule = schedule.Scheduler()
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
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._pool: WorkerPool | None = None

    # -- adding jobs -----------------------------------------------------

    def every(self, seconds: float, name: str, fn: Callable[[], object]) -> None:
        """Runs fn every `seconds`."""
        self._schedule.every(seconds).seconds.do(self._dispatch, name, fn).tag(name)

    def every_minute(self, name: str, fn: Callable[[], object]) -> None:
        """Runs fn at second :00 of every minute."""
        self._schedule.every().minute.at(":00").do(self._dispatch, name, fn).tag(name)

    def daily(self, at: str, name: str, fn: Callable[[], object]) -> None:
        self._schedule.every().day.at(at).do(self._dispatch, name, fn).tag(name)

    def at_instants(self, name: str, next_instant: NextInstant, fn: Callable[[], object]) -> None:
        """Runs fn at each instant next_instant(now) returns (aware datetimes)."""
        job = _InstantJob(self._schedule, next_instant, self._clock)
        job.do(self._dispatch, name, fn).tag(name)
        self._wake.set()

    def reschedule(self, name: str) -> None:
        """Recomputes the next run of instant jobs named `name` (their times changed)."""
        for job in self._schedule.get_jobs(name):
            job._schedule_next_run()
        self._wake.set()

    def next_run(self, name: str) -> dt.datetime | None:
        jobs = self._schedule.get_jobs(name)
        return min(job.next_run for job in jobs) if jobs else None

    # -- life cycle ------------------------------------------------------

    def start(self) -> None:
        self._pool = WorkerPool(self._workers)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Takes no new jobs; running jobs get `timeout` seconds to finish."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._pool:
            busy = self._pool.shutdown(timeout)
            if busy:
                log.warning("jobs still running at shutdown, abandoned: %s", ", ".join(busy))

    def run_now(self, name: str, fn: Callable[[], object]) -> Future | None:
        """Runs fn in the pool at once (e.g. catch-up at start, /tweet)."""
        return self._dispatch(name, fn)

    # -- the thread ------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._beat()
            faults.maybe_hang("scheduler")
            self._schedule.run_pending()
            idle = self._schedule.idle_seconds
            wait = self.beat_every_s if idle is None else min(max(idle, 0.0), self.beat_every_s)
            self._wake.wait(wait)
            self._wake.clear()

    def _dispatch(self, name: str, fn: Callable[[], object]) -> Future | None:
        with self._lock:
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
