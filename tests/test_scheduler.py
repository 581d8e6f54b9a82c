"""The scheduler thread and its worker pool, with no real minutes waited."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from zoneinfo import ZoneInfo

import pytest

from buzzbotd import timeofday
from buzzbotd.runtime.scheduler import Scheduler
from tests.support import ManualClock, wait_until


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
        wait_until(lambda: calls, 5, "the broken job ran")
        after_failure = len(ticks)
        wait_until(lambda: len(ticks) >= after_failure + 5, 5, "five ticks after the failure")
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
    wait_until(lambda: done, 3, "the fast job ran")
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
    wait_until(lambda: runs, 5, "the first run")
    assert scheduler.run_now("job", job) is None      # coalesced, not parallel
    assert scheduler.run_now("job", job) is None
    gate.set()
    wait_until(lambda: len(runs) == 2, 5, "the second run")
    assert overlaps == []


def test_instant_jobs_follow_their_next_instant(scheduler: Scheduler) -> None:
    base = datetime.now(UTC)
    instants = [base + timedelta(seconds=0.2 * i) for i in range(1, 4)]
    ran_at = []

    def next_instant(now: datetime) -> datetime | None:
        return next((t for t in instants if t > now), None)

    scheduler.at_instants("slots", next_instant, lambda: ran_at.append(datetime.now(UTC)))
    scheduler.start()
    wait_until(lambda: len(ran_at) == 3, 5, "three instants ran")
    for planned, actual in zip(instants, ran_at, strict=True):
        assert timedelta(0) <= actual - planned < timedelta(seconds=0.3)


def test_the_thread_beats_while_idle_and_stops_promptly(scheduler: Scheduler) -> None:
    scheduler.start()
    wait_until(lambda: len(scheduler.beats) >= 4, 5, "four beats")
    gaps = [b - a for a, b in zip(scheduler.beats, scheduler.beats[1:], strict=False)]
    assert max(gaps) < 0.5
    started = time.monotonic()
    scheduler.stop(2)
    assert time.monotonic() - started < 1


# -- UTC instants under any host TZ, with an injected clock ----------------------------


def settle(scheduler: Scheduler) -> None:
    """Until the thread has looked at the clock twice and every job it started is done."""
    passes = scheduler.passes

    def settled() -> bool:
        if scheduler.passes < passes + 2 or scheduler.running():
            scheduler.wake()
            return False
        return True
    wait_until(settled, 5, "the scheduler settled", interval=0.0005)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture(params=["Europe/Berlin", "UTC", "America/New_York"])
def host_tz(request, monkeypatch):
    """The host's TZ, as a Pi owner sets it: it must change nothing."""
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield request.param
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize(("start", "end", "times", "slots"), [
    # 2026-10-25: Berlin falls back from 03:00 CEST to 02:00 CET (01:00 UTC); 02:30
    # happens twice and is a slot once, at its first occurrence.
    ("2026-10-24T23:00", "2026-10-25T03:30", ["02:30", "03:30"],
     ["2026-10-25T00:30", "2026-10-25T02:30"]),
    # 2027-03-28: Berlin springs from 02:00 CET to 03:00 CEST (01:00 UTC); 02:30 does
    # not exist and happens when the gap ends.
    ("2027-03-27T23:00", "2027-03-28T03:00", ["02:30", "03:30"],
     ["2027-03-28T01:00", "2027-03-28T01:30"]),
])
def test_slots_and_minute_ticks_fire_once_at_their_utc_instants_across_dst(
        host_tz: str, start: str, end: str, times: list[str], slots: list[str]) -> None:
    clock = ManualClock(utc(start))
    s = Scheduler(beat_every_s=0.2, workers=2, clock=clock)
    local_times = [dt_time.fromisoformat(t) for t in times]
    fired: list[datetime] = []
    ticks: list[datetime] = []
    s.at_instants("x-slots", lambda now: timeofday.next_occurrence(local_times, BERLIN, now),
                  lambda: fired.append(clock()))
    s.every_minute("reminders", lambda: ticks.append(clock()))
    s.start()
    try:
        settle(s)
        # Steps of 20 s land on every whole minute, so a job that fires at its
        # instant records exactly that instant.
        while clock.now < utc(end):
            clock.now += timedelta(seconds=20)
            settle(s)
    finally:
        s.stop(2)
    assert fired == [utc(t) for t in slots]
    minutes = int((utc(end) - utc(start)).total_seconds() // 60)
    assert ticks == [utc(start) + timedelta(minutes=i) for i in range(1, minutes + 1)]


def test_a_clock_that_jumps_back_does_not_leave_the_minute_job_idle() -> None:
    clock = ManualClock(utc("2026-11-23T12:30:00"))
    s = Scheduler(beat_every_s=0.2, workers=2, clock=clock)
    ticks: list[datetime] = []
    s.every_minute("reminders", lambda: ticks.append(clock()))
    s.start()
    try:
        settle(s)
        clock.now = utc("2026-11-23T12:31:00")
        settle(s)
        clock.now = utc("2026-11-23T11:31:00")       # NTP steps the clock back an hour
        settle(s)
        clock.now = utc("2026-11-23T11:32:00")
        settle(s)
        clock.now = utc("2026-11-23T13:00:00")       # and forward past many minutes
        settle(s)
        settle(s)
    finally:
        s.stop(2)
    # Once each: the skipped minutes are one run (the jobs' own state catches up).
    assert ticks == [utc("2026-11-23T12:31:00"), utc("2026-11-23T11:32:00"),
                     utc("2026-11-23T13:00:00")]


def test_a_keyed_throttle_lets_each_key_through_once_per_period() -> None:
    from buzzbotd.runtime.throttle import KeyedThrottle
    now = [100.0]
    throttle = KeyedThrottle(60, clock=lambda: now[0])
    assert throttle.allow("a") and throttle.allow("b")
    now[0] += 59
    assert not throttle.allow("a") and throttle.since("a") == 59
    now[0] += 1
    assert throttle.allow("a") and not throttle.allow("a")
    throttle.note("b")                      # went through regardless: a new period
    now[0] += 30
    assert not throttle.allow("b")
    throttle.forget("b")
    assert throttle.allow("b")


def test_parts_stop_in_reverse_and_a_slow_one_is_abandoned_at_its_share(caplog) -> None:
    import asyncio

    from buzzbotd.runtime.lifecycle import Parts

    order: list[str] = []

    class Part:
        def __init__(self, name: str, takes_s: float) -> None:
            self.name, self.stop_s, self.takes_s = name, 0.2, takes_s

        def start(self) -> None:
            order.append(f"start {self.name}")

        async def stop(self, deadline: float) -> None:
            assert deadline <= time.monotonic() + self.stop_s
            await asyncio.sleep(self.takes_s)
            order.append(f"stop {self.name}")

    parts = Parts()
    for name, takes_s in (("database", 0), ("slow", 10), ("jobs", 0)):
        parts.start(Part(name, takes_s))
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        asyncio.run(parts.stop())
    assert time.monotonic() - started < 1.0
    assert order == ["start database", "start slow", "start jobs", "stop jobs", "stop database"]
    assert "slow did not stop within 0.2s; abandoned" in caplog.text
