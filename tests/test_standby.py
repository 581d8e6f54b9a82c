"""PostgreSQL with a leader and a standby (SPEC "Database: SQLite or
PostgreSQL, and a standby"): real daemons, one real PostgreSQL database, the
fake X; the leader is killed with kill -9."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from buzzbotd.timeofday import slot_key
from tests.fakes.price import FakePrice
from tests.fakes.x import FakeX
from tests.harness import Daemon, NotifySocket
from tests.postgres import query_elsewhere
from tests.x_world import expected_text, hhmmss, slot_in, wait_final, x_config


@pytest.fixture
def x() -> Iterator[FakeX]:
    fake = FakeX(reject_duplicates=False).start()     # a second POST would show
    yield fake
    fake.stop()


@pytest.fixture
def price() -> Iterator[FakePrice]:
    fake = FakePrice(67890.12, -1.23).start()
    yield fake
    fake.stop()


@pytest.fixture
def database_url(postgres_server) -> str:
    return postgres_server.create_database()


def pg_config(directory: Path, url: str, x: FakeX, price: FakePrice, times: list[str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    config = x_config(directory, x, price, times)
    with config.open("a") as f:
        f.write(f'[database]\nurl = "{url}"\n')
    return config


class _Url:
    def __init__(self, url: str) -> None:
        self.url, self.backend = url, "postgresql"


def test_the_standby_takes_over_a_killed_leader_without_a_second_tweet(
        tmp_path: Path, spawn, x: FakeX, price: FakePrice, database_url: str) -> None:
    due = slot_in(6)
    notify_a = NotifySocket(tmp_path / "a.sock")
    notify_b = NotifySocket(tmp_path / "b.sock")
    try:
        leader: Daemon = spawn(pg_config(tmp_path / "a", database_url, x, price, [hhmmss(due)]),
                               notify_a)
        notify_a.wait_message("READY=1", timeout=30)
        assert not any(s.startswith("standby") for s in notify_a.statuses())
        standby: Daemon = spawn(pg_config(tmp_path / "b", database_url, x, price,
                                          [hhmmss(due)]), notify_b)
        notify_b.wait_message("READY=1", timeout=30)
        line = next(s for s in notify_b.statuses() if s.startswith("standby"))
        assert f"(pid {leader.pid})" in line and line.startswith("standby: leader "), line
        # The leader dies after X stored its tweet, before the answer left.
        x.on_store = lambda tweet: leader.proc.kill()
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
    finally:
        notify_a.close()
        notify_b.close()
