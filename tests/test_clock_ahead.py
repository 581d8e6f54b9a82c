"""A clock that boots hours ahead (a Pi whose real-time clock keeps local time) and
is then stepped back by NTP: nothing it saw as late is called missed while it is
suspect, so the day's slots are posted and its reminders sent at their times
(buzzbotd.clock.ClockTrust), with the real daemon."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from buzzbotd.clock import SUSPECT_AHEAD, ClockTrust
from buzzbotd.timeofday import slot_key
from tests.fakes.x import CREDENTIALS, FakeX
from tests.support import read_sqlite
from tests.support.telegram_world import World, minute_of, reminder_rows, seed_reminders
from tests.support.x_world import TEMPLATE, hhmmss, wait_final

AHEAD = timedelta(hours=5, minutes=30)          # an RTC kept in India's local time
REMINDER = "Your daily Bitcoin reminder"


def set_clock(world: World, instant: datetime, synchronised: bool) -> None:
    """The daemon's clock reads `instant` now; "unsynchronised" as the kernel says
    before NTP has set it (buzzbotd/clock.py's test hook)."""
    offset = (instant - datetime.now(UTC)).total_seconds()
    part = world.clock.path.with_suffix(".part")
    part.write_text(f"{offset:.6f}{'' if synchronised else ' unsynchronised'}\n")
    os.replace(part, world.clock.path)
    world.clock.offset = offset


@pytest.fixture
def x() -> Iterator[FakeX]:
    fake = FakeX(reject_duplicates=False).start()
    yield fake
    fake.stop()


def test_a_clock_booted_ahead_then_stepped_back_loses_no_slot_and_no_reminder(
        tmp_path: Path, x: FakeX) -> None:
    day = minute_of(datetime.now(UTC)) + timedelta(minutes=3)     # the true time's minute
    slots = [day + timedelta(seconds=5), day + timedelta(seconds=15)]
    with closing(World(tmp_path, x={"enabled": True, "api_base": x.url, "timezone": "UTC",
                                    "times": [hhmmss(s) for s in slots], "grace_s": 60,
                                    "template": TEMPLATE, **CREDENTIALS})) as world:
        [user] = seed_reminders(world.database, 1, day, first_user=4242)
        # Yesterday's run, so to speak: the first start and a heartbeat, on a right clock.
        set_clock(world, day - timedelta(seconds=40), synchronised=True)
        world.start().wait_log("first start", timeout=20)
        assert world.stop_daemon() == 0
        # The reboot: the clock reads 5 h 30 ahead, and the kernel says so (unsynchronised).
        set_clock(world, day + AHEAD - timedelta(seconds=2), synchronised=False)
        daemon = world.start()
        daemon.wait_log("may be ahead", timeout=10)
        # The reminder round of that minute, and the catch-up of the slots: nothing is
        # called missed.
        daemon.wait_log("left due, not skipped", timeout=20)
        posts = read_sqlite(tmp_path / "state" / "buzzbotd.db", "SELECT slot_key FROM post")
        assert posts == [] and x.tweets == []
        [row] = reminder_rows(world.database)
        assert row["next_due_at"] == slot_key(day) and row["last_sent_local_date"] is None
        # NTP steps it back: the day goes on as if the clock had never been wrong.
        set_clock(world, day - timedelta(seconds=3), synchronised=True)
        for slot in slots:
            assert ": posted: tweet" in wait_final(daemon, slot_key(slot), timeout=30)
        assert REMINDER in world.telegram.wait_for_message(user, REMINDER, timeout=30).text
        assert len(x.tweets) == 2 and len(world.telegram.messages_to(user)) == 1
        [row] = reminder_rows(world.database)
        assert row["last_sent_local_date"] == day.date().isoformat()
        assert "Traceback" not in daemon.log


# -- the decision itself, in-process ---------------------------------------------------------


class Clock:
    def __init__(self, now: datetime, synchronised: bool) -> None:
        self.now, self.is_synchronised = now, synchronised

    def __call__(self) -> datetime:
        return self.now

    def synchronised(self) -> bool:
        return self.is_synchronised


NOW = datetime(2027, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("heartbeat, synchronised, suspect", [
    (None, False, False),                                       # a first start
    (NOW - timedelta(minutes=2), False, False),                 # a restart
    (NOW - SUSPECT_AHEAD - timedelta(seconds=1), True, False),  # down a while, NTP agrees
    (NOW - AHEAD, False, True),                                 # far ahead, nothing agrees
])
def test_a_start_far_past_the_last_heartbeat_is_suspect_unless_synchronised(
        heartbeat: datetime | None, synchronised: bool, suspect: bool) -> None:
    trust = ClockTrust()
    trust.opened(Clock(NOW, synchronised), heartbeat)
    assert trust.may_call_missed() is not suspect


def test_suspicion_ends_when_ntp_synchronises_the_clock() -> None:
    clock = Clock(NOW, synchronised=False)
    trust = ClockTrust()
    trust.opened(clock, NOW - AHEAD)
    assert not trust.may_call_missed()
    clock.is_synchronised = True
    assert trust.may_call_missed() and trust.may_call_missed()
    clock.is_synchronised = False                  # settled: not suspect again
    assert trust.may_call_missed()


def test_suspicion_ends_when_the_clock_steps_back() -> None:
    clock = Clock(NOW, synchronised=False)
    trust = ClockTrust()
    trust.opened(clock, NOW - AHEAD)
    clock.now = NOW + timedelta(seconds=10)        # a clock running on is no proof
    assert not trust.may_call_missed()
    clock.now = NOW - AHEAD
    assert trust.may_call_missed()
