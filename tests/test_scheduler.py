"""The scheduler thread and its worker pool, with no real minutes waited."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from buzzbotd.scheduler import Scheduler


@pytest.fixture
def scheduler():
    beats = []
    s = Scheduler(beat=lambda: beats.append(time.monotonic()), beat_every_s=0.2, workers=3)
    s.beats = beats
    yield s
    s.stop(2)


def once_at(when: datetime):
    """next_instant for a job that runs exactly once, at `when`."""
    return lambda now: when if now < when else None


def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_a_job_that_raises_is_logged_once_and_others_keep_running(
        scheduler: Scheduler, caplog: pytest.LogCaptureFixture) -> None:
    ticks = []
    calls = []

    def broken() -> None:
        calls.append(1)
        raise RuntimeError("price API exploded")

    scheduler.every(0.1, "ticker", lambda: ticks.append(1))
    scheduler.at_instants("broken", once_at(datetime.now(UTC) + timedelta(seconds=0.3)), broken)
    with caplog.at_level(logging.ERROR, logger="buzzbotd.scheduler"):
        scheduler.start()
        wait_until(lambda: calls)
        after_failure = len(ticks)
        wait_until(lambda: len(ticks) >= after_failure + 5)
    assert calls == [1], "the failed job must not re-fire"
    failures = [r for r in caplog.records if "job broken failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is not None
    assert scheduler.failures == {"broken": 1}


def test_a_slow_job_does_not_delay_the_others(scheduler: Scheduler) -> None:
    release = threading.Event()
    done = []
    start = datetime.now(UTC) + timedelta(seconds=0.2)
    scheduler.at_instants("slow", once_at(start), lambda: release.wait(10))
    scheduler.at_instants("fast", once_at(start + timedelta(seconds=0.1)),
                          lambda: done.append(time.monotonic()))
    scheduler.start()
    wait_until(lambda: done, timeout=3)
    assert not release.is_set()
    release.set()


def test_a_running_job_is_not_started_twice_but_runs_again_after(scheduler: Scheduler) -> None:
    running = []
    overlaps = []
    runs = []
    gate = threading.Event()

    def job() -> None:
        if running:
            overlaps.append(1)
        running.append(1)
        runs.append(1)
        if len(runs) == 1:
            gate.wait(5)
        running.pop()

    scheduler.start()
    scheduler.run_now("job", job)
    wait_until(lambda: runs)
    assert scheduler.run_now("job", job) is None      # coalesced, not parallel
    assert scheduler.run_now("job", job) is None
    gate.set()
    wait_until(lambda: len(runs) == 2)
    assert overlaps == []


def test_instant_jobs_follow_their_next_instant(scheduler: Scheduler) -> None:
    base = datetime.now(UTC)
    instants = [base + timedelta(seconds=0.2 * i) for i in range(1, 4)]
    ran_at = []

    def next_instant(now: datetime) -> datetime | None:
        return next((t for t in instants if t > now), None)

    scheduler.at_instants("slots", next_instant, lambda: ran_at.append(datetime.now(UTC)))
    scheduler.start()
    wait_until(lambda: len(ran_at) == 3)
    for planned, actual in zip(instants, ran_at, strict=True):
        assert timedelta(0) <= actual - planned < timedelta(seconds=0.3)


def test_the_thread_beats_while_idle_and_stops_promptly(scheduler: Scheduler) -> None:
    scheduler.start()
    wait_until(lambda: len(scheduler.beats) >= 4)
    gaps = [b - a for a, b in zip(scheduler.beats, scheduler.beats[1:], strict=False)]
    assert max(gaps) < 0.5
    started = time.monotonic()
    scheduler.stop(2)
    assert time.monotonic() - started < 1
