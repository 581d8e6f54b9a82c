"""The database under pressure, the daemon a real process under a watchdog:
another process holding the SQLite lock, and a full file system."""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from buzzbotd import config
from buzzbotd.db import Meta, SqliteOwner
from buzzbotd.db import owner as owner_module
from buzzbotd.ops.health import Health
from buzzbotd.posting.poster import Poster
from buzzbotd.price import PriceClient
from buzzbotd.timeofday import slot_key
from tests.fakes.price import FakePrice
from tests.fakes.x import FakeX
from tests.support import Daemon, NotifySocket, wait_until
from tests.support.x_world import SlotClock, expected_text, hhmmss, wait_final, x_config

# WatchdogSec=4s: pings due every 2 s, each after the owner answered within 1 s;
# killed after 4 s. The unit has 30 s (a 7.5 s answer). At 1 s, a commit's fsync
# on a stalling CI disk (half a second) read as an owner that does not answer.
WATCHDOG_USEC = 4_000_000
WATCHDOG_S = WATCHDOG_USEC / 1_000_000
# How long the outside lock is held. 12 s is 3 watchdog timeouts, 60 of the
# owner's 0.2 s lock slices, and longer than the old 10 s busy timeout; set
# BUZZBOTD_TEST_LOCK_S=120 to run the SPEC's full figure.
LOCK_S = float(os.environ.get("BUZZBOTD_TEST_LOCK_S", "12"))
RESUME_S = 2.0                     # SPEC: work resumes within 2 s of the release


@pytest.fixture
def world(x: FakeX, price: FakePrice) -> tuple[FakeX, FakePrice]:
    """The fake X (accepting duplicates, so a second POST would show) and price API."""
    return x, price


def first_at(daemon: Daemon, text: str) -> float:
    return min(at for at, line in daemon.lines if text in line)


def ping_gaps(notify: NotifySocket, start: float, end: float) -> list[float]:
    pings = [t for t in notify.times_of("WATCHDOG=1") if start <= t <= end]
    return [b - a for a, b in zip([start, *pings], [*pings, end], strict=True)]


def resumed_once(daemon: Daemon, notify: NotifySocket, x: FakeX, due: datetime,
                 ready_at: float, released_at: float, database: Path,
                 within_s: float = RESUME_S) -> tuple[float, float]:
    """After the database came back: the slot's claim landed within `within_s`,
    one tweet, no watchdog gap, the process never restarted. Returns (seconds
    from the release to the claim, longest gap between pings)."""
    key = slot_key(due)
    line = wait_final(daemon, key, timeout=20)
    assert ": posted: tweet " in line, line
    claimed_after = first_at(daemon, f"slot {key}: claimed") - released_at
    assert claimed_after < within_s, f"the claim landed {claimed_after:.2f}s after the release"
    notify.wait_for(lambda m: m.startswith("STATUS=ready: "), timeout=10, after=released_at)
    # The watchdog was fed all along, before, during and after: systemd would
    # have aborted the process at a gap of WatchdogSec.
    gaps = ping_gaps(notify, ready_at, time.monotonic())
    assert max(gaps) < WATCHDOG_S, f"longest gap between pings {max(gaps):.2f}s"
    assert "writes work again after" in daemon.log
    assert x.texts() == [expected_text(67890.12, -1.23, due)]
    assert "Traceback" not in daemon.log and "unhealthy" not in daemon.log
    assert daemon.terminate() == 0, daemon.log       # the same process all along
    assert slot_events(database, key) == ["claimed", "sending", "posted"]
    return claimed_after, max(gaps)


def slot_events(database: Path, key: str) -> list[str]:
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return [e for (e,) in db.execute(
            "SELECT e.event FROM post_event e JOIN post p ON p.id = e.post_id "
            "WHERE p.slot_key = ? ORDER BY e.id", (key,))]
    finally:
        db.close()


def test_an_outside_lock_costs_no_restart_and_loses_or_repeats_nothing(
        tmp_path: Path, notify: NotifySocket, spawn, world: tuple[FakeX, FakePrice]) -> None:
    x, price = world
    clock = SlotClock(tmp_path, x)
    due = clock.due                                # falls inside the lock
    config = x_config(tmp_path, x, price, [hhmmss(due)])
    daemon: Daemon = spawn(config, notify, **clock.daemon_args(watchdog_usec=WATCHDOG_USEC))
    ready_at = notify.wait_message("READY=1", timeout=20)
    daemon.wait_log("database backed up to", timeout=10)   # the start's backup is done
    database = tmp_path / "state" / "buzzbotd.db"
    # An operator's shell: `sqlite3 buzzbotd.db` then `BEGIN EXCLUSIVE;`, left open.
    shell = sqlite3.connect(database, isolation_level=None, timeout=10)
    shell.execute("BEGIN EXCLUSIVE")
    locked_at = time.monotonic()
    due_at = clock.arrive(daemon)                  # the slot comes a second into the lock
    # Held LOCK_S, and at least 2 s past the slot, so the slot's job waits on it.
    hold_s = max(LOCK_S, due_at + 2 - time.time())
    try:
        daemon.wait_log("locked by another process", timeout=LOCK_S + 10)
        notify.wait_for(lambda m: m.startswith("STATUS=degraded: database locked by another "
                                               "process for "), timeout=5, after=locked_at)
        time.sleep(max(locked_at + hold_s - time.monotonic(), 0))  # the lock's duration
        assert x.tweets == [], "nothing can be posted before its claim is recorded"
    finally:
        shell.execute("ROLLBACK")
        shell.close()
    released_at = time.monotonic()
    claimed_after, gap = resumed_once(daemon, notify, x, due, ready_at, released_at, database)
    assert "database is locked" not in daemon.log
    print(f"lock {released_at - locked_at:.1f}s: claim {claimed_after:.3f}s after the release; "
          f"longest ping gap {gap:.3f}s")


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs as the state dir; skipped only where mounting is not permitted."""
    state = tmp_path / "state"
    state.mkdir(mode=0o750)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0750", "tmpfs",
                              str(state)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs (needs root): {mounted.stderr.strip()}")
    yield state
    subprocess.run(["umount", "-l", str(state)], check=False)


def fill(directory: Path) -> Path:
    """Fills the file system that holds `directory` to the last byte."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as e:
        assert e.errno == errno.ENOSPC, e
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_costs_no_restart_and_loses_or_repeats_nothing(
        tmp_path: Path, notify: NotifySocket, small_fs: Path, spawn,
        world: tuple[FakeX, FakePrice]) -> None:
    x, price = world
    clock = SlotClock(tmp_path, x)
    due = clock.due
    config = x_config(tmp_path, x, price, [hhmmss(due)])
    daemon: Daemon = spawn(config, notify, **clock.daemon_args(watchdog_usec=WATCHDOG_USEC))
    ready_at = notify.wait_message("READY=1", timeout=20)
    daemon.wait_log("database backed up to", timeout=10)   # the start's backup is done
    filler = fill(small_fs)
    full_at = time.monotonic()
    clock.arrive(daemon)                                   # the slot comes on a full disk
    daemon.wait_log("database or disk is full", timeout=20)
    notify.wait_for(lambda m: m.startswith("STATUS=degraded: database writes failing "
                                           "(database or disk is full) for "), timeout=5,
                    after=full_at)
    # Several tries a second apart fail while the disk stays full.
    time.sleep(5)
    assert x.tweets == [], "a tweet was posted whose claim could not be recorded"
    assert daemon.proc.poll() is None
    errors = [line for at, line in daemon.lines if at >= full_at and line.startswith("<3>")]
    assert len(errors) == 1 and "database or disk is full" in errors[0], daemon.log
    filler.unlink()
    freed_at = time.monotonic()
    # A failed write is tried again every WRITE_RETRY_S (0.5 s), the queue behind it then.
    claimed_after, gap = resumed_once(daemon, notify, x, due, ready_at, freed_at,
                                      small_fs / "buzzbotd.db", within_s=2 * RESUME_S)
    print(f"disk full {freed_at - full_at:.1f}s: claim {claimed_after:.3f}s after space came "
          f"back; longest ping gap {gap:.3f}s")


def test_a_claim_that_cannot_be_recorded_posts_nothing(
        tmp_path: Path, small_fs: Path, world: tuple[FakeX, FakePrice],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The owner gives up on a write after GIVE_UP_S (shortened here); the
    caller gets the error and nothing reaches X. The owner lives on."""
    x, price = world
    monkeypatch.setattr(owner_module, "GIVE_UP_S", 2.0)
    settings = config.load(x_config(tmp_path, x, price, ["08:00"]), environ={})
    reasons: list[str | None] = []
    health = Health()
    health.listen(lambda part, before, after: reasons.append(after and after.reason))
    owner = SqliteOwner(small_fs / "buzzbotd.db", health=health)
    owner.start()
    try:
        poster = Poster(settings, owner, PriceClient(settings.price))
        filler = fill(small_fs)
        started = time.monotonic()
        with pytest.raises(owner_module.DatabaseUnavailable, match="database or disk is full"):
            poster.post_now()
        assert 2.0 <= time.monotonic() - started < 10
        assert x.post_attempts == 0 and price.requests == []
        assert reasons == ["writes failing (database or disk is full)"]
        owner.ping().result(timeout=1)          # the owner thread is alive
        filler.unlink()
        post = poster.post_now()
        assert post.state == "posted" and len(x.tweets) == 1
        assert reasons == ["writes failing (database or disk is full)", None]
    finally:
        owner.stop()


def test_the_owner_answers_pings_while_locked_out_and_stops_promptly(tmp_path: Path) -> None:
    owner = SqliteOwner(tmp_path / "buzzbotd.db")
    owner.start()
    shell = sqlite3.connect(tmp_path / "buzzbotd.db", isolation_level=None)
    shell.execute("BEGIN IMMEDIATE")
    write = owner.submit(lambda: Meta.insert(key="k", value="v").execute())

    def locked_out() -> bool:
        if owner.unavailable() is None:
            owner.ping().result(timeout=1)
        return owner.unavailable() is not None
    wait_until(locked_out, 5, "the owner locked out", interval=0)
    assert owner.unavailable()[0] == "locked by another process"
    for _ in range(5):      # answered between the 0.2 s tries, not after the lock
        started = time.monotonic()  # (which is never released here: any answer is one)
        owner.ping().result(timeout=2)
        assert time.monotonic() - started < 1.0
    assert not write.done()
    started = time.monotonic()
    owner.stop()
    assert time.monotonic() - started < 2, "stop must not wait for the outside lock"
    with pytest.raises(Exception, match="gave up on this write"):
        write.result(timeout=0)
    shell.execute("ROLLBACK")
    shell.close()
