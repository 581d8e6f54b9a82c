"""One part's outage never stops another, and a stop is bounded: the real daemon
against the fake Telegram, X and price servers (SPEC "Guarantees under faults")."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from buzzbotd.daemon import STOP_BUDGET_S
from buzzbotd.timeofday import slot_key
from tests.fakes.base import Fault
from tests.fakes.price import ROUTE as PRICE_ROUTE
from tests.fakes.price import FakePrice
from tests.fakes.telegram import TOKEN, FakeTelegram
from tests.fakes.x import CREDENTIALS, POST_TWEET, FakeX
from tests.support import Daemon, NotifySocket, free_port, write_config
from tests.support.telegram_world import ADMIN
from tests.support.x_world import TEMPLATE, SlotClock, hhmmss, post_row, status_json, wait_final


@pytest.fixture
def fakes(x: FakeX, price: FakePrice) -> tuple[FakeX, FakePrice]:
    return x, price


def config(directory: Path, x: FakeX, price: FakePrice, telegram_base: str, times: list[str],
           price_timeout_s: int = 2, token: str = TOKEN) -> Path:
    """X on at `times` (UTC) and the bot on, pointed at the fakes."""
    sections: dict[str, Any] = {
        "price": {"url": price.endpoint, "timeout_s": price_timeout_s},
        "x": {"enabled": True, "api_base": x.url, "times": times, "timezone": "UTC",
              "grace_s": 600, "template": TEMPLATE, **CREDENTIALS},
        "telegram": {"enabled": True, "api_base": telegram_base, "token": token,
                     "admin_ids": [ADMIN]},
    }
    return write_config(directory, **sections)


def test_telegram_down_at_start_does_not_delay_x_and_the_bot_connects_later(
        tmp_path: Path, notify: NotifySocket, spawn, fakes) -> None:
    x, price = fakes
    port = free_port()
    telegram = FakeTelegram()                  # not listening yet: connections refused
    clock = SlotClock(tmp_path, x)
    due = clock.due
    daemon: Daemon = spawn(config(tmp_path, x, price, f"http://127.0.0.1:{port}",
                                  [hhmmss(due)]), notify, **clock.daemon_args())
    try:
        ready_at = notify.wait_message("READY=1", timeout=20)
        assert ready_at - daemon.started_at < 10
        _, line = notify.wait_for(lambda m: m.startswith("STATUS=degraded: telegram: cannot "
                                                         "reach Telegram"), timeout=10)
        assert "since 20" in line, line
        clock.arrive(daemon)
        assert wait_final(daemon, slot_key(due), timeout=30).endswith(": posted: tweet "
                                                                      f"{x.tweets[0].id}: created")
        assert len(x.tweets) == 1
        degraded = status_json(daemon_config(tmp_path))["health"]["degraded"]
        assert list(degraded) == ["telegram"], degraded
        # Telegram comes back: the bot connects on its own and answers.
        telegram.start(port)
        daemon.wait_log("connected to Telegram", timeout=45)
        assert "/price" in telegram.ask(ADMIN + 1, "/help", timeout=15)
        notify.wait_for(lambda m: m.startswith("STATUS=ready: "), timeout=10)
        assert status_json(daemon_config(tmp_path))["health"]["degraded"] == {}
        assert daemon.proc.poll() is None and "Traceback" not in daemon.log
    finally:
        telegram.stop()


def daemon_config(directory: Path) -> Path:
    return directory / "buzzbotd.toml"


def test_a_refused_token_stops_only_the_bot(tmp_path: Path, notify: NotifySocket, spawn,
                                            fakes) -> None:
    x, price = fakes
    telegram = FakeTelegram(token="123:the-real-one").start()   # ours is refused: 401
    clock = SlotClock(tmp_path, x)
    due = clock.due
    try:
        daemon: Daemon = spawn(config(tmp_path, x, price, telegram.url, [hhmmss(due)]), notify,
                               **clock.daemon_args())
        notify.wait_message("READY=1", timeout=20)
        line = daemon.wait_log("telegram.token refused", timeout=20)
        assert line.startswith("<3>") and str(daemon_config(tmp_path)) in line, line
        assert "401 Unauthorized" in line and "every 10 min" in line
        notify.wait_for(lambda m: m.startswith("STATUS=degraded: telegram: telegram.token "
                                               "refused (401 Unauthorized)"), timeout=10)
        clock.arrive(daemon)
        assert ": posted: tweet" in wait_final(daemon, slot_key(due), timeout=30)
        assert len(x.tweets) == 1
        row = post_row(daemon_config(tmp_path), slot_key(due))
        assert row and row["state"] == "posted"
        degraded = status_json(daemon_config(tmp_path))["health"]["degraded"]
        assert degraded["telegram"]["reason"] == "telegram.token refused (401 Unauthorized)"
        # Not hammered: one getMe, retried only after TOKEN_RETRY_S.
        assert [r.path.rsplit("/", 1)[-1] for r in telegram.requests] == ["getMe"]
        assert TOKEN not in daemon.log and "Traceback" not in daemon.log
        assert daemon.proc.poll() is None
    finally:
        telegram.stop()


def stop_and_time(daemon: Daemon, notify: NotifySocket) -> float:
    sent = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    notify.wait_message("STOPPING=1", timeout=5, after=sent)
    rc = daemon.wait(30)
    took = time.monotonic() - sent
    assert rc == 0, daemon.log
    return took


def test_a_stop_with_a_price_request_hanging_ends_within_the_budget(
        tmp_path: Path, notify: NotifySocket, spawn, fakes) -> None:
    x, price = fakes
    telegram = FakeTelegram().start()
    try:
        # The SPEC's default price timeout (10 s, three attempts): a /price that waits
        # for it would hold the stop for half a minute.
        daemon: Daemon = spawn(config(tmp_path, x, price, telegram.url, ["03:00"],
                                      price_timeout_s=10), notify)
        notify.wait_message("READY=1", timeout=20)
        daemon.wait_log("connected to Telegram", timeout=20)
        asked = threading.Event()
        price.add_fault(PRICE_ROUTE, Fault.hang(60, on_hit=lambda _: asked.set()), times=10)
        telegram.inject_message(ADMIN + 2, "/price")
        assert asked.wait(15)
        took = stop_and_time(daemon, notify)
        assert took < STOP_BUDGET_S, f"stop took {took:.1f}s\n{daemon.log}"
        print(f"stop with a /price hanging: {took:.2f}s")
        assert "Traceback" not in daemon.log
    finally:
        telegram.stop()


def test_a_stop_with_a_post_in_flight_ends_within_the_budget_and_loses_nothing(
        tmp_path: Path, notify: NotifySocket, spawn, fakes) -> None:
    x, price = fakes
    telegram = FakeTelegram().start()
    try:
        clock = SlotClock(tmp_path, x)
        due = clock.due
        path = config(tmp_path, x, price, telegram.url, [hhmmss(due)])
        # X stores the tweet and then answers nothing (for longer than any budget).
        stored = threading.Event()
        x.add_fault(POST_TWEET, Fault.hang(60, after=True, on_hit=lambda _: stored.set()))
        daemon: Daemon = spawn(path, notify, **clock.daemon_args())
        notify.wait_message("READY=1", timeout=20)
        clock.arrive(daemon)
        assert stored.wait(20) and len(x.tweets) == 1
        took = stop_and_time(daemon, notify)
        assert took < STOP_BUDGET_S, f"stop took {took:.1f}s\n{daemon.log}"
        print(f"stop with a POST in flight: {took:.2f}s")
        row = post_row(path, slot_key(due))
        assert row and row["state"] == "sending", (row, daemon.log)   # open, not lost
        # The next start settles it from X's timeline: posted, never posted twice.
        notify2 = NotifySocket(tmp_path / "notify2.sock")
        try:
            again: Daemon = spawn(path, notify2, **clock.daemon_args())
            line = wait_final(again, slot_key(due), timeout=30)
            assert ": posted: tweet " in line and "timeline" in line, line
            assert len(x.tweets) == 1
            assert again.terminate() == 0
        finally:
            notify2.close()
    finally:
        telegram.stop()


def test_a_token_revoked_while_polling_stops_only_the_bot(tmp_path: Path, notify: NotifySocket,
                                                          spawn, fakes) -> None:
    x, price = fakes
    telegram = FakeTelegram().start()
    try:
        daemon: Daemon = spawn(config(tmp_path, x, price, telegram.url, ["03:00"]), notify)
        notify.wait_message("READY=1", timeout=20)
        daemon.wait_log("connected to Telegram", timeout=20)
        telegram.token = "123:revoked-by-botfather"
        telegram.inject_message(ADMIN + 3, "/help")      # ends the long poll; the next is 401
        daemon.wait_log("telegram.token refused", timeout=20)
        notify.wait_for(lambda m: m.startswith("STATUS=degraded: telegram: telegram.token "
                                               "refused"), timeout=10)
        assert daemon.proc.poll() is None
        assert "Traceback" not in daemon.log and TOKEN not in daemon.log
        took = stop_and_time(daemon, notify)
        assert took < STOP_BUDGET_S
    finally:
        telegram.stop()
