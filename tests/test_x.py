"""X posting against the fake X API v2 and price API, the daemon a real process.

Each test that takes `daemon_db` runs on SQLite and on PostgreSQL (conftest's
`backend`). SQLite only, by nature: the fsync-before-POST trace (SQLite's WAL
file) and the kill -9 trials (tools/crash_trials.py; on PostgreSQL the failover
trials in test_standby.py kill the leader the same way)."""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from buzzbotd.timeofday import slot_key
from tests.fakes import Fault
from tests.fakes.price import ROUTE as PRICE_ROUTE
from tests.fakes.x import POST_TWEET
from tests.support import REPO, Daemon
from tests.support.backends import DaemonDatabase
from tests.support.x_world import (
    SlotClock,
    expected_text,
    hhmmss,
    post_row,
    slot_in,
    wait_final,
    x_config,
)
from tools.crash_trials import run_trials


def events(database: DaemonDatabase, key: str, daemon: Daemon) -> list[tuple[str, str]]:
    """The slot's ledger events as the database holds them once the daemon stopped."""
    assert daemon.terminate() == 0, daemon.log
    return database.rows("SELECT e.event, coalesce(e.detail, '') FROM post_event e "
                         "JOIN post p ON p.id = e.post_id WHERE p.slot_key = ? ORDER BY e.id",
                         (key,))


def set_first_start(database: DaemonDatabase, when: datetime) -> None:
    """As if the daemon had first started at `when` (it has run once on this state)."""
    database.execute("UPDATE meta SET value = ? WHERE key = 'daemon.first_start'",
                     (slot_key(when),))


def test_a_slot_posts_one_tweet_with_the_served_price(tmp_path, notify, spawn, x, price,
                                                      daemon_db):
    clock = SlotClock(tmp_path, x)
    due = clock.due
    config = x_config(tmp_path, x, price, [hhmmss(due)], database_url=daemon_db.url)
    daemon: Daemon = spawn(config, notify, **clock.daemon_args())
    notify.wait_message("READY=1", timeout=20)
    # (on PostgreSQL the first STATUS= may be "taking over", until it leads)
    notify.wait_for(lambda m: m.startswith("STATUS=") and "next tweet" in m, timeout=10)
    due_at = clock.arrive(daemon)
    line = wait_final(daemon, slot_key(due), timeout=20)
    assert line.startswith("<6>") and ": posted: tweet " in line, line
    assert x.texts() == [expected_text(67890.12, -1.23, due)]
    posted_at = x.requests[-1].at
    assert posted_at >= due_at, "posted before its slot"
    row = post_row(config, slot_key(due))
    assert row and row["state"] == "posted" and row["tweet_id"] == x.tweets[0].id, row
    assert x.timeline_reads == 0, "the timeline is read only for unknown outcomes"
    assert [e for e, _ in events(daemon_db, slot_key(due), daemon)] == [
        "claimed", "sending", "posted"]
    assert len(x.tweets) == 1


# One traced syscall as `strace -f -ttt -yy` prints it: tid, time, name, fd<path>.
SYSCALL = re.compile(r"^(\d+) +(\d+\.\d+) (\w+)\(\d+<([^>]*)>(.*)$")


def test_each_ledger_move_is_on_disk_before_the_post_it_announces(tmp_path, notify, x, price):
    """What this proves: the commit of the `sending` row (with its text) has
    returned from fsync/fdatasync of the WAL before the POST leaves, and a
    separate connection reads that row while X holds the request. What it does
    not prove: that the disk honours fsync (a real power cut is not simulated)."""
    strace = shutil.which("strace")
    assert strace, "this test needs strace (apt-get install strace)"
    clock = SlotClock(tmp_path, x)
    due = clock.due
    key = slot_key(due)
    config = x_config(tmp_path, x, price, [hhmmss(due)])
    database = config.parent / "state" / "buzzbotd.db"
    seen_at_x: list[tuple[str, str]] = []

    def read_the_row(request) -> None:          # another process's view, at the POST
        db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        try:
            seen_at_x.append(db.execute("SELECT state, text FROM post WHERE slot_key = ?",
                                        (key,)).fetchone())
        finally:
            db.close()

    x.on_post = read_the_row
    trace = tmp_path / "strace.txt"
    daemon = Daemon(config, notify, prefix=(
        strace, "-f", "-ttt", "-qq", "-yy", "-s", "96", "-o", str(trace),
        "-e", "trace=fsync,fdatasync,pwrite64,write,sendto"), **clock.daemon_args())
    try:
        clock.arrive(daemon, timeout=40)
        line = wait_final(daemon, key, timeout=40)
    finally:
        # SIGTERM to strace would detach it and leave the daemon running: stop the daemon.
        children = Path(f"/proc/{daemon.pid}/task/{daemon.pid}/children")
        for pid in children.read_text().split() if children.exists() else ():
            os.kill(int(pid), signal.SIGTERM)
        daemon.wait(20)
    assert ": posted: tweet " in line, line
    assert seen_at_x == [("sending", x.texts()[0])]
    calls = [m.groups() for m in map(SYSCALL.match, trace.read_text().splitlines()) if m]
    post = next(i for i, c in enumerate(calls) if c[2] == "sendto" and "POST /2/tweets" in c[4])
    wal = [i for i, c in enumerate(calls[:post]) if c[3].endswith("buzzbotd.db-wal")]
    last_write = max(i for i in wal if calls[i][2] == "pwrite64")
    synced = [i for i in wal if i > last_write and calls[i][2] in ("fsync", "fdatasync")]
    assert synced, "the WAL frames of the `sending` row were not synced before the POST"
    # The figure for the README: syncs in the slot's life, from its claim to its confirmation.
    lines = {m.group(1): float(c[1]) for c in calls if c[2] == "write"
             for m in [re.search(f"slot {key}: (\\w+)", c[4])] if m}
    start, end = lines["claimed"] - 0.05, lines["posted"]
    syncs = [c for c in calls if c[2] in ("fsync", "fdatasync") and start < float(c[1]) <= end]
    print(f"fsyncs for slot {key}: {len(syncs)}")
    assert len(syncs) >= 3, syncs        # claimed, sending, posted: one commit each


def test_kill_9_after_x_stored_the_tweet_before_it_answered(tmp_path, notify, spawn, x, price,
                                                            daemon_db):
    clock = SlotClock(tmp_path, x)
    due = clock.due
    config = x_config(tmp_path, x, price, [hhmmss(due)], database_url=daemon_db.url)
    daemon: Daemon = spawn(config, notify, **clock.daemon_args())
    x.on_store = lambda tweet: daemon.proc.kill()       # the answer never leaves
    clock.arrive(daemon)
    assert daemon.wait(20) == -9
    assert len(x.tweets) == 1
    x.on_store = None
    again = spawn(config, notify, **clock.daemon_args())
    line = wait_final(again, slot_key(due), timeout=20)
    assert "found on the account's timeline" in line, line
    assert x.texts() == [expected_text(67890.12, -1.23, due)]
    assert x.post_attempts == 1 and x.timeline_reads == 1
    assert post_row(config, slot_key(due))["tweet_id"] == x.tweets[0].id


@pytest.mark.parametrize("stored", [True, False], ids=["x-stored-it", "x-did-not"])
def test_a_sending_row_whose_window_passed_is_settled_on_the_timeline(
        tmp_path, notify, spawn, x, price, daemon_db, stored):
    clock = SlotClock(tmp_path, x)
    due = clock.due
    key = slot_key(due)
    config = x_config(tmp_path, x, price, [hhmmss(due)], grace_s=60,
                      database_url=daemon_db.url)
    daemon: Daemon = spawn(config, notify, **clock.daemon_args())
    if stored:
        x.on_store = lambda tweet: daemon.proc.kill()
    else:                                       # killed at the POST, before X stores it
        x.add_fault(POST_TWEET, Fault.drop(on_hit=lambda request: daemon.proc.kill()))
    clock.arrive(daemon)
    assert daemon.wait(20) == -9
    x.on_store = None
    # Down until the slot's window has passed: the row is found `sending` at the restart.
    clock.set_to(max(clock.now(), due + timedelta(seconds=60.5)))
    line = wait_final(spawn(config, notify, **clock.daemon_args()), key, timeout=20)
    assert x.timeline_reads == 1 and x.post_attempts == 1
    if stored:
        assert ": posted: tweet " in line and "found on the account's timeline" in line, line
        assert post_row(config, key)["tweet_id"] == x.tweets[0].id
    else:
        assert ": failed: gave up at the end of the slot's window (not on the account's " \
            "timeline" in line, line
        assert x.tweets == []


def test_x_stores_the_tweet_and_never_answers(tmp_path, notify, spawn, x, price, daemon_db):
    clock = SlotClock(tmp_path, x)
    due = clock.due
    config = x_config(tmp_path, x, price, [hhmmss(due)], database_url=daemon_db.url)
    x.add_fault(POST_TWEET, Fault.hang(30, after=True))   # longer than the 10 s client timeout
    daemon = spawn(config, notify, **clock.daemon_args())
    clock.arrive(daemon)
    line = wait_final(daemon, slot_key(due), timeout=40)
    assert "found on the account's timeline" in line, line
    assert len(x.tweets) == 1 and x.post_attempts == 1
    assert ("unknown", "no answer: ReadTimeout; settling before any retry") in \
        events(daemon_db, slot_key(due), daemon)


def test_a_dropped_connection_whose_tweet_was_not_stored_is_posted_once(
        tmp_path, notify, spawn, x, price, daemon_db):
    clock = SlotClock(tmp_path, x)
    due = clock.due
    config = x_config(tmp_path, x, price, [hhmmss(due)], database_url=daemon_db.url)
    x.add_fault(POST_TWEET, Fault.drop())                  # before storing: nothing on X
    daemon = spawn(config, notify, **clock.daemon_args())
    clock.arrive(daemon)
    line = wait_final(daemon, slot_key(due), timeout=30)
    assert ": posted: tweet " in line and "created" in line, line
    assert len(x.tweets) == 1 and x.post_attempts == 2 and x.timeline_reads == 1
    assert "not on the account's timeline" in str(events(daemon_db, slot_key(due), daemon))


def test_503_twice_then_ok_posts_once(tmp_path, notify, spawn, x, price, daemon_db):
    clock = SlotClock(tmp_path, x)
    due = clock.due
    config = x_config(tmp_path, x, price, [hhmmss(due)], database_url=daemon_db.url)
    x.add_fault(POST_TWEET, Fault.status_code(503, {"title": "Service Unavailable"}), times=2)
    daemon = spawn(config, notify, **clock.daemon_args())
    clock.arrive(daemon)
    wait_final(daemon, slot_key(due), timeout=30)
    assert len(x.tweets) == 1 and x.post_attempts == 3 and x.timeline_reads == 0
    assert [e for e, _ in events(daemon_db, slot_key(due), daemon)] == [
        "claimed", "sending", "retry", "sending", "retry", "sending", "posted"]
    assert post_row(config, slot_key(due))["attempts"] == 3
    assert "<4>buzzbotd.x: slot " in daemon.log and "retry: 503 Service Unavailable" in daemon.log


def test_429_waits_for_the_reset(tmp_path, notify, spawn, x, price, daemon_db):
    clock = SlotClock(tmp_path, x)
    due = clock.due
    config = x_config(tmp_path, x, price, [hhmmss(due)], database_url=daemon_db.url)
    # X's window resets 3 s after the first POST (on X's clock, the daemon's), however
    # late a loaded machine makes that POST.
    limited = x.rate_limited(reset_at=0)
    resets: list[int] = []

    def reset_in_3s(request) -> None:
        resets.append(math.ceil(x.clock().timestamp() + 3))
        limited.headers["x-rate-limit-reset"] = str(resets[-1])

    limited.on_hit = reset_in_3s
    x.add_fault(POST_TWEET, limited)
    daemon = spawn(config, notify, **clock.daemon_args())
    clock.arrive(daemon)
    wait_final(daemon, slot_key(due), timeout=30)
    posts = [r for r in x.requests if x.route(r) == POST_TWEET]
    assert len(posts) == 2 and len(x.tweets) == 1
    reset_at = clock.real(datetime.fromtimestamp(resets[0], UTC))   # requests are real
    assert posts[0].at < reset_at <= posts[1].at, (posts[0].at, reset_at, posts[1].at)


def test_a_429_resetting_after_the_window_fails_the_slot(tmp_path, notify, spawn, x, price,
                                                         daemon_db):
    clock = SlotClock(tmp_path, x)
    due = clock.due
    config = x_config(tmp_path, x, price, [hhmmss(due)], grace_s=60,
                      database_url=daemon_db.url)
    x.add_fault(POST_TWEET, x.rate_limited(reset_at=due.timestamp() + 3600))
    daemon = spawn(config, notify, **clock.daemon_args())
    clock.arrive(daemon)
    line = wait_final(daemon, slot_key(due), timeout=30)
    assert line.startswith("<3>") and ": failed: 429" in line and "after the slot's window" in line
    assert x.tweets == []


@pytest.mark.parametrize("answer", [
    pytest.param(b'{"bitcoin": {"usd": 6789', id="malformed-json"),
    pytest.param({"bitcoin": {"usd": -5.0, "usd_24h_change": 1.0}}, id="negative-price"),
    pytest.param({"bitcoin": {"usd": "67k", "usd_24h_change": 1.0}}, id="price-not-a-number"),
    pytest.param({"ethereum": {"usd": 3000.0}}, id="wrong-shape"),
    pytest.param(Fault.status_code(500, {"error": "boom"}), id="http-500"),
])
def test_a_bad_price_answer_is_never_tweeted(tmp_path, notify, spawn, x, price, daemon_db,
                                             answer):
    clock = SlotClock(tmp_path, x)
    due = clock.due
    config = x_config(tmp_path, x, price, [hhmmss(due)], database_url=daemon_db.url)
    if isinstance(answer, Fault):
        price.add_fault(PRICE_ROUTE, answer, times=1000)
    else:
        price.serve_raw(answer)
    daemon = spawn(config, notify, **clock.daemon_args())
    clock.arrive(daemon)
    line = daemon.wait_log(f"slot {slot_key(due)}: price-failed", timeout=30)
    assert line.startswith("<3>"), line
    assert x.post_attempts == 0
    # The API recovers within the slot's window: the real price is posted, once.
    price.clear_faults()
    price.set_price(70000.5, 2.5)
    wait_final(daemon, slot_key(due), timeout=60)
    assert x.texts() == [expected_text(70000.5, 2.5, due)]
    ledger = [e for e, _ in events(daemon_db, slot_key(due), daemon)]
    assert ledger[:2] == ["claimed", "price-failed"] and ledger[-2:] == ["sending", "posted"]
    assert set(ledger[1:-2]) == {"price-failed"}, ledger


def test_downtime_within_grace_is_caught_up_and_after_grace_skipped(
        tmp_path, notify, spawn, x, price, daemon_db):
    now = datetime.now(UTC).replace(microsecond=0)
    within, beyond = now - timedelta(seconds=60), now - timedelta(seconds=400)
    config = x_config(tmp_path, x, price, [hhmmss(now + timedelta(hours=2))], grace_s=300,
                      database_url=daemon_db.url)
    first = spawn(config, notify)               # the daemon ran once, an hour ago…
    notify.wait_message("READY=1", timeout=20)
    first.wait_log("first start", timeout=20)   # (on PostgreSQL: once it leads)
    assert first.terminate() == 0
    set_first_start(daemon_db, now - timedelta(hours=1))
    # …and was down across both slots.
    config = x_config(tmp_path, x, price, [hhmmss(within), hhmmss(beyond)], grace_s=300,
                      database_url=daemon_db.url)
    daemon = spawn(config, notify)
    caught_up = wait_final(daemon, slot_key(within), timeout=20)
    assert ": posted: tweet " in caught_up, caught_up
    skipped = wait_final(daemon, slot_key(beyond), timeout=20)
    assert skipped.startswith("<4>") and ": skipped: missed: the daemon was not running" in \
        skipped, skipped
    assert x.texts() == [expected_text(67890.12, -1.23, within)]


def test_slots_before_the_first_start_are_not_caught_up(tmp_path, notify, spawn, x, price,
                                                        daemon_db):
    earlier = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    config = x_config(tmp_path, x, price, [hhmmss(earlier)], grace_s=300,
                      database_url=daemon_db.url)
    daemon = spawn(config, notify)
    notify.wait_message("READY=1", timeout=20)
    daemon.wait_log("first start", timeout=20)  # (on PostgreSQL: once it leads)
    assert daemon.terminate() == 0
    assert x.post_attempts == 0 and f"slot {slot_key(earlier)}" not in daemon.log


def test_a_slot_that_passes_while_paused_is_skipped(tmp_path, notify, spawn, x, price,
                                                    daemon_db):
    config = x_config(tmp_path, x, price, [hhmmss(slot_in(7200))], database_url=daemon_db.url)
    first = spawn(config, notify)
    notify.wait_message("READY=1", timeout=20)
    assert first.terminate() == 0
    daemon_db.execute("DELETE FROM meta WHERE key = 'x.paused'")
    daemon_db.execute("INSERT INTO meta (key, value) VALUES ('x.paused', '1')")
    clock = SlotClock(tmp_path, x)
    due = clock.due
    config = x_config(tmp_path, x, price, [hhmmss(due)], database_url=daemon_db.url)
    daemon = spawn(config, notify, **clock.daemon_args())
    assert any("X posting paused" in s for s in notify.statuses()) or \
        notify.wait_for(lambda m: "X posting paused" in m, timeout=20)
    clock.arrive(daemon)
    line = wait_final(daemon, slot_key(due), timeout=20)
    assert ": skipped: posting was paused" in line, line
    assert x.post_attempts == 0


def test_tweet_dry_run_prints_the_tweet_and_posts_nothing(tmp_path, x, price):
    config = x_config(tmp_path, x, price, ["08:00"])
    out = subprocess.run([sys.executable, "-m", "buzzbotd", "tweet", "--dry-run",
                          "--config", str(config)], capture_output=True, text=True, cwd=REPO,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("BTC $67,890.12 (-1.23%) at "), out.stdout
    assert x.requests == []
    price.serve_raw({"bitcoin": {"usd": float("nan"), "usd_24h_change": 0}})
    bad = subprocess.run([sys.executable, "-m", "buzzbotd", "tweet", "--dry-run",
                          "--config", str(config)], capture_output=True, text=True, cwd=REPO,
                         timeout=30)
    assert bad.returncode == 1 and "finite" in bad.stderr and "Traceback" not in bad.stderr
    assert bad.stdout == ""


# `make test` runs 6 trials, `make trials` 20, `make bench` 100.
@pytest.mark.parametrize("trials", [6, pytest.param(20, marks=pytest.mark.long)])
def test_randomized_kill_9_trials_leave_exactly_one_tweet_per_slot(tmp_path, trials):
    result = run_trials(trials, tmp_path, seed=None)
    assert (result["slots_with_0"], result["slots_with_1"], result["slots_with_2_or_more"]) \
        == (0, trials, 0), result
    assert result["manual_with_2_or_more"] == 0, result


def test_kill_9_trials_with_timeline_reads_refused_leave_one_posted_tweet_per_slot(tmp_path):
    result = run_trials(3, tmp_path, seed=None, refused_share=1.0)
    assert (result["slots_with_0"], result["slots_with_1"], result["slots_with_2_or_more"],
            result["slots_posted"]) == (0, 3, 0, 3), result
    assert result["timeline_reads"] <= 3, result       # one refused read, then none for a day
    assert result["reads_refused"]["posts_max"] <= 3, result


def test_the_24_hour_quota_reset_wins_when_that_quota_ran_out():
    import requests

    from buzzbotd.posting.x import _rate_limit_reset
    response = requests.Response()
    response.headers.update({"x-rate-limit-reset": "1795000000",
                             "x-user-limit-24hour-remaining": "0",
                             "x-user-limit-24hour-reset": "1795050000",
                             "x-app-limit-24hour-remaining": "12",
                             "x-app-limit-24hour-reset": "1795090000"})
    assert _rate_limit_reset(response) == datetime.fromtimestamp(1795050001, UTC)
    response.headers["x-user-limit-24hour-remaining"] = "3"
    assert _rate_limit_reset(response) == datetime.fromtimestamp(1795000001, UTC)
