"""The host's TZ and clock, with the real daemon: the same UTC instants under any TZ,
nothing done before the clock is sane, and jumps that neither repeat nor lose a slot.

The daemon's apparent clock is set through BUZZBOTD_TEST_CLOCK (buzzbotd/clock.py);
`file:` lets a test step it while the process runs."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from buzzbotd.clock import build_date
from buzzbotd.timeofday import slot_key
from tests.support import Daemon, FileClock, NotifySocket, read_sqlite
from tests.support.x_world import hhmmss, wait_final, x_config


def rows(config: Path, sql: str) -> list[tuple]:
    return read_sqlite(config.parent / "state" / "buzzbotd.db", sql)


def posts(config: Path) -> list[tuple[str, str, str]]:
    """(slot key, state, claimed at) of every ledger row, by due time."""
    return rows(config, "SELECT slot_key, state, created_at FROM post ORDER BY due_at")


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.parametrize("host_tz", ["Europe/Berlin", "UTC"])
def test_the_same_utc_instants_under_any_host_tz_across_the_fall_back(
        tmp_path: Path, notify: NotifySocket, spawn, x, price, host_tz: str) -> None:
    # 2027-10-31 01:00:00Z: Berlin falls back from 03:00 CEST to 02:00 CET.
    start = datetime(2027, 10, 31, 0, 59, 52, tzinfo=UTC)
    slots = [start + timedelta(seconds=6), start + timedelta(seconds=13)]   # 00:59:58, 01:00:05
    config = x_config(tmp_path, x, price, [hhmmss(s) for s in slots])
    daemon: Daemon = spawn(config, notify, env={
        "TZ": host_tz, "BUZZBOTD_TEST_CLOCK": start.strftime("%Y-%m-%dT%H:%M:%SZ")})
    notify.wait_message("READY=1", timeout=20)
    for slot in slots:
        assert ": posted: tweet" in wait_final(daemon, slot_key(slot), timeout=30)
    got = posts(config)
    assert [(key, state) for key, state, _ in got] == [
        ("2027-10-31T00:59:58Z", "posted"), ("2027-10-31T01:00:05Z", "posted")]
    for (_, _, claimed), slot in zip(got, slots, strict=True):
        late = (parse(claimed) - slot).total_seconds()
        assert 0 <= late < 2, f"claimed {late:.2f}s after its slot"
    assert len(x.tweets) == 2
    assert "Traceback" not in daemon.log


def test_nothing_happens_until_the_clock_is_later_than_the_build(
        tmp_path: Path, notify: NotifySocket, spawn, x, price) -> None:
    clock = FileClock(tmp_path / "clock")
    clock.move_to(datetime(2020, 1, 1, tzinfo=UTC))                 # a Pi before its NTP fix
    due = (datetime.now(UTC) + timedelta(seconds=8)).replace(microsecond=0)
    # The slot's time of day also passes in the wrong clock's day: it must not count.
    config = x_config(tmp_path, x, price, [hhmmss(due)])
    daemon: Daemon = spawn(config, notify, env=clock.env)
    notify.wait_message("READY=1", timeout=20)
    _, status = notify.wait_for(lambda m: m.startswith("STATUS="), timeout=5)
    assert status.startswith("STATUS=waiting for the clock: it reads 2020-01-01T"), status
    assert f"earlier than this build ({build_date():%Y-%m-%d})" in status
    daemon.wait_log("earlier than this build", timeout=5)
    meta = dict(rows(config, "SELECT key, value FROM meta"))
    assert "daemon.first_start" not in meta, meta
    assert posts(config) == [] and x.requests == []
    # NTP sets the clock: work starts, the first start is now, the slot is posted.
    clock.set_offset(0.0)
    daemon.wait_log("the clock is set now", timeout=10)
    notify.wait_for(lambda m: m.startswith("STATUS=ready: "), timeout=10)
    assert ": posted: tweet" in wait_final(daemon, slot_key(due), timeout=30)
    first = parse(dict(rows(config, "SELECT key, value FROM meta"))["daemon.first_start"])
    assert first >= build_date()
    assert [(k, s) for k, s, _ in posts(config)] == [(slot_key(due), "posted")]
    assert len(x.tweets) == 1


def test_clock_jumps_neither_repeat_nor_lose_a_slot(
        tmp_path: Path, notify: NotifySocket, spawn, x, price) -> None:
    clock = FileClock(tmp_path / "clock")
    slot = (datetime.now(UTC) + timedelta(hours=3)).replace(second=0, microsecond=0)
    later = slot + timedelta(seconds=12)
    clock.move_to(slot - timedelta(seconds=20))
    config = x_config(tmp_path, x, price, [hhmmss(slot), hhmmss(later)], grace_s=600)
    daemon: Daemon = spawn(config, notify, env=clock.env)
    notify.wait_message("READY=1", timeout=20)
    daemon.wait_log("first start", timeout=10)
    # Forward past the slot (within grace): it is posted once, late, at once.
    clock.move_to(slot + timedelta(seconds=60))
    assert ": posted: tweet" in wait_final(daemon, slot_key(slot), timeout=20)
    # The scheduler sees each step on its next pass (it sleeps up to 10 s without a
    # watchdog): a step back before that pass would cancel the step forward out.
    daemon.wait_log("the wall clock jumped ahead", timeout=15)
    # Back before it: the slot's instant passes again and nothing is posted again.
    clock.move_to(slot - timedelta(seconds=3))
    daemon.wait_log("the wall clock went back", timeout=15)
    # ... and the next slot, after the repeated stretch, is not lost.
    assert ": posted: tweet" in wait_final(daemon, slot_key(later), timeout=30)
    assert [(k, s) for k, s, _ in posts(config)] == [(slot_key(slot), "posted"),
                                                     (slot_key(later), "posted")]
    assert len(x.tweets) == 2 and x.post_attempts == 2
    assert "Traceback" not in daemon.log


def test_the_build_date_is_the_newest_changelog_entry_in_a_source_tree() -> None:
    import email.utils

    from tests.support import REPO
    trailer = next(line for line in (REPO / "debian" / "changelog").read_text().splitlines()
                   if line.startswith(" -- "))
    expected = email.utils.parsedate_to_datetime(trailer.split(">", 1)[1].strip())
    assert build_date() == expected.astimezone(UTC)


def test_the_test_clock_follows_its_file_and_refuses_a_naive_instant(tmp_path: Path) -> None:
    from buzzbotd.clock import ShiftedClock, from_environment, utc_now
    path = tmp_path / "clock"
    path.write_text("-86400")
    clock = ShiftedClock(f"file:{path}")
    assert abs((utc_now() - clock()) - timedelta(days=1)) < timedelta(seconds=1)
    path.write_text("2030-01-01T00:00:00.000000Z")     # an instant: read from now on
    assert abs(clock() - datetime(2030, 1, 1, tzinfo=UTC)) < timedelta(seconds=1)
    path.write_text("not a time")                       # a bad write keeps the last offset
    assert clock().year == 2030
    # Two rewrites within one tick of the file system's timestamps: both are seen.
    moved = FileClock(path)
    assert abs(clock() - utc_now()) < timedelta(seconds=1)
    tick = path.stat().st_mtime_ns
    moved.set_offset(-60.0)
    os.utime(path, ns=(tick, tick))
    assert abs((utc_now() - clock()) - timedelta(seconds=60)) < timedelta(seconds=1)
    with pytest.raises(ValueError, match="no UTC offset"):
        ShiftedClock("2030-01-01T00:00:00")
    assert from_environment({}) is utc_now
