"""PostgreSQL with a leader and a standby (SPEC "Database: SQLite or
PostgreSQL, and a standby"): real daemons, one real PostgreSQL database, the
fake X; the leader is killed with kill -9.

The daemons run on one injected clock (BUZZBOTD_TEST_CLOCK=file:…): they
start minutes before their slot, and only once both are READY (and a test's
kill hook is armed) is the clock moved to just before it. No test depends on
how fast a daemon starts (seconds, when the disk stalls)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from buzzbotd.timeofday import slot_key
from tests.fakes.price import FakePrice
from tests.fakes.x import CREDENTIALS, FakeX
from tests.support import Daemon, FileClock, NotifySocket, free_port, wait_until, write_config
from tests.support.postgres import query_elsewhere
from tests.support.x_world import TEMPLATE, expected_text, hhmmss, slot_in, wait_final, x_config
from tests.test_http import get

# The slot is this far out at the start (a start never takes that long); the clock
# is moved to LEAD_S before it once the daemons are READY.
SLOT_AFTER_S = 300
LEAD_S = 1.0
WATCHDOG_USEC = 2_000_000      # the scheduler beats every 2/6 s: it sees the move at once


@pytest.fixture
def clock(tmp_path: Path, x: FakeX) -> FileClock:
    """The daemons' clock file (X's clock too), reading the real time until moved."""
    shared = FileClock(tmp_path / "clock")
    x.clock = shared.now
    return shared


def clocked(clock: FileClock) -> dict:
    """spawn()'s arguments for a daemon on `clock`."""
    return {"env": clock.env, "watchdog_usec": WATCHDOG_USEC}


def move_to_just_before(clock: FileClock, due: datetime, lead_s: float = LEAD_S) -> None:
    clock.move_to(due - timedelta(seconds=lead_s))


@pytest.fixture
def database_url(postgres_server) -> str:
    return postgres_server.create_database()


@pytest.fixture
def notify_pair(tmp_path: Path) -> Iterator[tuple[NotifySocket, NotifySocket]]:
    """The notify sockets of daemon a and daemon b."""
    pair = NotifySocket(tmp_path / "a.sock"), NotifySocket(tmp_path / "b.sock")
    yield pair
    for sock in pair:
        sock.close()


def pg_config(directory: Path, url: str, x: FakeX, price: FakePrice, times: list[str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return x_config(directory, x, price, times, database_url=url)


def start_pair(tmp_path: Path, spawn, x: FakeX, price: FakePrice, url: str, due,
               notify_a: NotifySocket, notify_b: NotifySocket,
               clock: FileClock) -> tuple[Daemon, Daemon]:
    """A leader (in tmp_path/a) and then a standby (tmp_path/b), both READY on
    `clock`, with a slot at `due` (still minutes away on that clock)."""
    leader: Daemon = spawn(pg_config(tmp_path / "a", url, x, price, [hhmmss(due)]), notify_a,
                           **clocked(clock))
    notify_a.wait_message("READY=1", timeout=60)
    assert not any(s.startswith("standby") for s in notify_a.statuses())
    standby: Daemon = spawn(pg_config(tmp_path / "b", url, x, price, [hhmmss(due)]), notify_b,
                            **clocked(clock))
    notify_b.wait_message("READY=1", timeout=60)
    assert clock.now() < due - timedelta(seconds=LEAD_S), "the slot passed while they started"
    return leader, standby


class _Url:
    def __init__(self, url: str) -> None:
        self.url, self.backend = url, "postgresql"


def test_the_standby_takes_over_a_killed_leader_without_a_second_tweet(
        tmp_path: Path, spawn, x: FakeX, price: FakePrice, database_url: str,
        notify_pair: tuple[NotifySocket, NotifySocket], clock: FileClock) -> None:
    due = slot_in(SLOT_AFTER_S)
    leader, standby = start_pair(tmp_path, spawn, x, price, database_url, due, *notify_pair,
                                 clock)
    line = next(s for s in notify_pair[1].statuses() if s.startswith("standby"))
    assert f"(pid {leader.pid})" in line and line.startswith("standby: leader "), line
    # The leader dies after X stored its tweet, before the answer left.
    x.on_store = lambda tweet: leader.proc.kill()
    move_to_just_before(clock, due)
    assert leader.wait(30) == -9
    died = time.monotonic()
    x.on_store = None
    standby.wait_log("this daemon is the leader now", timeout=15)
    took = time.monotonic() - died
    line = wait_final(standby, slot_key(due), timeout=30)
    assert "found on the account's timeline" in line, line
    assert x.texts() == [expected_text(67890.12, -1.23, due)]
    assert x.post_attempts == 1
    rows = query_elsewhere(_Url(database_url),
                           "SELECT state, count(*) FROM post GROUP BY state")
    assert rows == [("posted", 1)], rows
    print(f"takeover after kill -9: {took:.2f}s")
    assert took < 15


def test_a_post_of_the_killed_leader_that_lands_after_the_takeover_is_not_repeated(
        tmp_path: Path, spawn, x: FakeX, price: FakePrice, database_url: str,
        notify_pair: tuple[NotifySocket, NotifySocket], clock: FileClock) -> None:
    """The leader dies with its POST on the way (sent, not yet stored by X): the
    standby, leading 0.3 s later, must not read the timeline, find nothing and
    post again before that POST can have landed."""
    due = slot_in(SLOT_AFTER_S)
    leader, standby = start_pair(tmp_path, spawn, x, price, database_url, due, *notify_pair,
                                 clock)

    landed = threading.Event()

    def land_late(request) -> None:        # X gets the POST; its sender dies; it lands
        x.on_post = None
        leader.proc.kill()
        standby.wait_log("this daemon is the leader now", timeout=15)
        time.sleep(2)
        landed.set()

    x.on_post = land_late
    move_to_just_before(clock, due)
    line = wait_final(standby, slot_key(due), timeout=40)
    assert leader.wait(5) == -9, f"the leader was not killed:\n{leader.log}"
    assert landed.wait(20)
    # Every POST that reached X is stored (or was refused) before it is counted.
    assert x.wait_until(lambda: len(x.tweets) >= x.post_attempts, 10)
    assert x.texts() == [expected_text(67890.12, -1.23, due)], line
    assert "found on the account's timeline" in line, line


def test_migrate_db_copies_10000_reminders_and_a_year_of_posts_and_refuses_a_full_target(
        tmp_path: Path, spawn, x: FakeX, price: FakePrice, database_url: str) -> None:
    import sqlite3
    import subprocess
    import sys
    from datetime import datetime, timedelta

    from tests.support import REPO
    from tests.support.telegram_world import seed_reminders
    from tests.support.x_world import status_json

    config = x_config(tmp_path, x, price, ["08:00"])
    database = tmp_path / "state" / "buzzbotd.db"
    database.parent.mkdir(parents=True)
    seed_reminders(database, 10_000, datetime(2026, 1, 1, tzinfo=UTC), spread_s=86400)
    db = sqlite3.connect(database)
    start = datetime(2025, 1, 1, 8, tzinfo=UTC)
    with db:
        for day in range(365):
            when = (start + timedelta(days=day)).strftime("%Y-%m-%dT%H:%M:%SZ")
            post = db.execute("INSERT INTO post (slot_key, kind, due_at, state, text, tweet_id, "
                              "attempts, created_at, updated_at) VALUES (?, 'scheduled', ?, "
                              "'posted', ?, ?, 1, ?, ?)",
                              (when, when, f"BTC {day}", str(10**18 + day), when, when)).lastrowid
            db.execute("INSERT INTO post_event (post_id, at, event) VALUES (?, ?, 'posted')",
                       (post, when))
    db.close()
    before = status_json(config)

    def migrate() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "buzzbotd", "migrate-db", "--to",
                               database_url, "--config", str(config)], capture_output=True,
                              text=True, cwd=REPO, timeout=120)

    done = migrate()
    assert done.returncode == 0, done.stderr
    assert "reminder 10000" in done.stdout and "post 365" in done.stdout, done.stdout
    assert "test-secret-pw" not in done.stdout + done.stderr
    again = migrate()
    assert again.returncode == 1 and "not empty" in again.stderr, again.stderr
    assert "Traceback" not in again.stderr
    pg = pg_config(tmp_path / "pg", database_url, x, price, ["08:00"])
    after = status_json(pg)
    assert after["x"]["last_posts"] == before["x"]["last_posts"]
    assert after["telegram"] == before["telegram"] if "telegram" in before else True
    assert after["backend"] == "postgresql" and "test-secret-pw" not in json_text(after)
    counts = query_elsewhere(_Url(database_url), "SELECT (SELECT count(*) FROM reminder), "
                             "(SELECT count(*) FROM post), (SELECT count(*) FROM post_event)")
    assert counts == [(10_000, 365, 365)]


def json_text(value: object) -> str:
    import json
    return json.dumps(value)


@pytest.mark.parametrize("url", ["mysql://u:hunter2@h/db", "postgresql://u:hunter2@h:99999/db",
                                 "postgresql://u:hunter2@/db", 5432])
def test_a_bad_database_url_is_exit_78_naming_it_without_the_password(tmp_path: Path,
                                                                       url: object) -> None:
    import subprocess
    import sys

    from tests.support import REPO, write_config

    config = write_config(tmp_path, database={"url": url})
    done = subprocess.run([sys.executable, "-m", "buzzbotd", "check-config", "--config",
                           str(config)], capture_output=True, text=True, cwd=REPO, timeout=30)
    assert done.returncode == 78, done.stderr
    assert "database.url" in done.stderr and "hunter2" not in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_a_leader_cut_off_from_postgresql_stops_and_the_standby_posts_the_slot_once(
        tmp_path: Path, spawn, x: FakeX, price: FakePrice, postgres_server,
        database_url: str, clock: FileClock) -> None:
    """A partition between the leader and PostgreSQL (a TCP proxy, cut): the
    leader stops acting within 5 s, the standby takes over within 15 s and
    posts the slot due after the cut once; healed, the old leader (restarted
    as systemd would) comes back as a standby."""
    from tests.fakes.telegram import TOKEN, FakeTelegram
    from tests.support.tcp_proxy import TcpProxy
    from tests.support.telegram_world import ADMIN

    telegram = FakeTelegram().start()
    proxy = TcpProxy(postgres_server.host, postgres_server.port)
    via_proxy = database_url.replace(f":{postgres_server.port}/", f":{proxy.port}/")
    urls = {"a": (telegram.url, x.url), "b": (telegram.another_url(), x.another_url())}
    due = slot_in(SLOT_AFTER_S)    # on the daemons' clock; the cut comes 8 s before it

    def config(name: str, url: str) -> Path:
        bot = {"enabled": True, "api_base": urls[name][0], "token": TOKEN, "admin_ids": [ADMIN]}
        directory = tmp_path / name
        directory.mkdir()
        return x_config(directory, x, price, [hhmmss(due)], telegram=bot, database_url=url,
                        api_base=urls[name][1])

    notify_a, notify_b = NotifySocket(tmp_path / "a.sock"), NotifySocket(tmp_path / "b.sock")
    try:
        config_a = config("a", via_proxy)
        leader: Daemon = spawn(config_a, notify_a, **clocked(clock))
        notify_a.wait_message("READY=1", timeout=60)
        standby: Daemon = spawn(config("b", database_url), notify_b, **clocked(clock))
        notify_b.wait_message("READY=1", timeout=60)
        assert any(s.startswith("standby: leader") for s in notify_b.statuses())
        assert telegram.wait_until(lambda: _polls(telegram, urls["a"][0]), 20), "no poll"
        assert not _polls(telegram, urls["b"][0]), "a standby polled Telegram"
        assert clock.now() < due - timedelta(seconds=8), "the slot came while they started"
        move_to_just_before(clock, due, 8)     # the cut: 8 s before the slot
        cut_wall, cut = time.time(), time.monotonic()
        proxy.cut()
        assert leader.wait(10) == 1, leader.log       # exit 1: systemd restarts it
        stopped = time.monotonic() - cut
        standby.wait_log("this daemon is the leader now", timeout=15)
        took = time.monotonic() - cut
        line = wait_final(standby, slot_key(due), timeout=30)
        assert ": posted" in line, line
        after = cut_wall + 5
        from tests.fakes.x import POST_TWEET
        assert not [r for r in x.via(urls["a"][1]) if r.at > after
                    and x.route(r) == POST_TWEET], "the cut-off leader posted"
        assert not [r for r in _polls(telegram, urls["a"][0]) if r.at > after]
        assert x.texts() == [expected_text(67890.12, -1.23, due)]
        assert [x.route(r) for r in x.via(urls["b"][1])].count(POST_TWEET) == 1
        assert telegram.wait_until(lambda: _polls(telegram, urls["b"][0]), 15)
        assert telegram.overlapping_polls == []
        print(f"partition: the leader stopped {stopped:.2f}s after the cut, "
              f"the standby led {took:.2f}s after it")
        assert stopped < 5 and took < 15
        proxy.heal()
        notify_a.close()
        notify_a = NotifySocket(tmp_path / "a2.sock")
        spawn(config_a, notify_a, **clocked(clock))
        notify_a.wait_message("READY=1", timeout=60)
        status = next(s for s in notify_a.statuses() if s.startswith("standby"))
        assert f"(pid {standby.pid})" in status, status
        assert x.texts() == [expected_text(67890.12, -1.23, due)]
    finally:
        notify_a.close()
        notify_b.close()
        proxy.stop()
        telegram.stop()


def test_a_leader_keeps_its_leadership_while_the_servers_commits_stall(
        tmp_path: Path, spawn, x: FakeX, price: FakePrice,
        notify_pair: tuple[NotifySocket, NotifySocket], clock: FileClock) -> None:
    """A server whose commits wait (as on a disk whose fsync stalls for seconds)
    has not cut its leader off: the leader's heartbeat does not wait for the
    disk, so it keeps leading and the standby stays a standby. The stall here:
    synchronous_standby_names names a standby that never comes, so every commit
    that waits for durability waits (no statement_timeout ends that wait) until
    the setting is reset — on a server of this test's own: it is server-wide."""
    from buzzbotd.db.leadership import LOSE_AFTER_S
    from buzzbotd.db.pgdriver import load_driver
    from tests.support.postgres import start_server

    server = start_server(durable_commits=True)     # its commits wait, as a daemon's do
    try:
        url = server.create_database()
        leader, standby = start_pair(tmp_path, spawn, x, price, url, slot_in(SLOT_AFTER_S),
                                     *notify_pair, clock)
        leader.wait_log("this daemon is the leader now", timeout=30)
        with load_driver().connect(server.url(), autocommit=True) as admin:
            admin.execute("ALTER SYSTEM SET synchronous_standby_names = 'nobody'")
            admin.execute("SELECT pg_reload_conf()")
            committed = threading.Event()

            def commit() -> None:
                with load_driver().connect(url, autocommit=True) as probe:
                    probe.execute("CREATE TABLE stalled (n int)")
                committed.set()

            try:
                began = time.monotonic()
                threading.Thread(target=commit, name="stalled-commit", daemon=True).start()
                assert not committed.wait(1), "commits do not stall"
                # The stall's length is the point, not a hope: the leader is looked at after.
                time.sleep(max(2 * LOSE_AFTER_S - (time.monotonic() - began), 0))
                assert leader.proc.poll() is None, f"the leader gave up:\n{leader.log}"
            finally:
                admin.execute("ALTER SYSTEM RESET synchronous_standby_names")
                admin.execute("SELECT pg_reload_conf()")
            assert committed.wait(15), "the stall never ended"
        assert "leadership lost" not in leader.log, leader.log
        assert "leader now" not in standby.log, standby.log
        assert any(s.startswith("standby: leader") for s in notify_pair[1].statuses())
    finally:
        server.stop()            # the daemons are killed by the spawn fixture


def _polls(telegram, via: str) -> list:
    return [r for r in telegram.via(via) if telegram.route(r).lower() == "getupdates"]


# `make test` runs a few trials, `make trials` FAILOVER_TRIALS (~2 min in all on a
# loaded 2-core machine), `make bench` 100.
FAILOVER_TRIALS = 20


@pytest.mark.parametrize("trials", [3, pytest.param(FAILOVER_TRIALS, marks=pytest.mark.long)])
def test_randomized_failover_trials_lose_and_repeat_no_slot_and_never_poll_twice(
        tmp_path: Path, database_url: str, trials: int) -> None:
    """tools/failover_trials.py: the leader kill -9'd at random points of claim →
    post → confirm and of a reminder round; the standby takes over."""
    from tools.failover_trials import run_trials

    result = run_trials(trials, tmp_path, database_url)
    print(f"failover trials: {result}")
    assert (result["slots_with_0"], result["slots_with_1"], result["slots_with_2_or_more"]) \
        == (0, trials, 0), result
    assert result["reminders_with_0"] == 0, result
    assert result["overlapping_getupdates"] == 0, result
    assert result["takeovers_timed"] > 0 and result["takeover_max_s"] < 15, result


def test_a_stop_during_a_heartbeat_is_a_clean_stop_not_a_lost_leadership(
        database_url: str) -> None:
    """stop() closes the leadership session; a heartbeat in flight then fails. That
    is the daemon's own stop (exit 0), not a leadership loss (exit 1, the unit
    marked failed): a PostgreSQL leader's `systemctl stop` at times exited 1."""
    from buzzbotd.clock import utc_now
    from buzzbotd.db.leadership import Leadership
    from buzzbotd.db.pgdriver import load_driver
    from buzzbotd.db.postgres import PostgresOwner

    schema = PostgresOwner(database_url)         # the schema, as a first start makes it
    schema.start()
    schema.stop()
    gained, lost = threading.Event(), []
    leadership = Leadership(database_url, None, on_gained=gained.set, on_lost=lost.append,
                            wall=utc_now)
    leadership.start()
    blocker = load_driver().connect(database_url)
    try:
        assert gained.wait(10), "never led"
        # The next heartbeat's presence write waits behind this row lock: a beat in flight.
        blocker.execute("SELECT * FROM daemon_node WHERE name = %s FOR UPDATE",
                        (leadership.name,))
        waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        with load_driver().connect(database_url, autocommit=True) as probe:
            wait_until(lambda: probe.execute(waiting).fetchone()[0] > 0, 5,
                       "the heartbeat waiting on the lock", interval=0.05)
        leadership.stop()
        for thread in threading.enumerate():      # the failed beat, then both threads end
            if thread.name in ("leadership", "leadership-watch"):
                thread.join(5)
                assert not thread.is_alive(), f"{thread.name} did not stop"
    finally:
        blocker.close()
    assert lost == []


def test_a_healthy_standby_answers_its_http_reads_with_role_standby(
        tmp_path: Path, spawn, x: FakeX, price: FakePrice, database_url: str,
        notify_pair: tuple[NotifySocket, NotifySocket], clock: FileClock) -> None:
    due = slot_in(SLOT_AFTER_S)
    ports = {"a": free_port(), "b": free_port()}
    daemons = {}
    for name, notify in zip("ab", notify_pair, strict=True):
        (tmp_path / name).mkdir()
        config = write_config(
            tmp_path / name, price={"url": price.endpoint, "timeout_s": 2},
            x={"enabled": True, "api_base": x.url, "times": [hhmmss(due)], "timezone": "UTC",
               "template": TEMPLATE, **CREDENTIALS},
            telegram={"enabled": False}, database={"url": database_url},
            http={"listen": f"127.0.0.1:{ports[name]}"})
        daemons[name] = spawn(config, notify, **clocked(clock))
        notify.wait_message("READY=1", timeout=60)
    assert any(s.startswith("standby") for s in notify_pair[1].statuses())
    for name, role in (("b", "standby"), ("a", "leader")):
        base = f"http://127.0.0.1:{ports[name]}"
        for path in ("/health", "/api/status", "/", "/metrics"):
            code, body, _ = get(base + path)
            assert code == 200, (name, path, body[:300])
        assert json.loads(get(f"{base}/health")[1])["role"] == role
    assert "Traceback" not in daemons["b"].log and "NotLeader" not in daemons["b"].log
