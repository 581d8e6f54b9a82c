"""A daemon with the Telegram bot on, pointed at the fake Telegram and price servers,
and the reminder load figures (burst throughput, RSS, due-query time).

Shared by the Telegram and reminder tests and by tools/bench/: no pytest here.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from buzzbotd import config, reminders
from buzzbotd.db import SqliteOwner, open_owner
from buzzbotd.db.models import utc_text
from buzzbotd.price import PriceClient
from buzzbotd.telegram import ChatRateLimiter, TelegramBot
from tests.fakes.price import FakePrice
from tests.fakes.telegram import TOKEN, FakeTelegram
from tests.support import Daemon, FileClock, ManualClock, NotifySocket, rss_kib, write_config
from tests.support.backends import DaemonDatabase, as_database

ADMIN = 1000
FIRST_SEEDED_USER = 10_000_000


def telegram_config(directory: Path, fake: FakeTelegram, price_api: FakePrice,
                    **sections: dict[str, Any]) -> Path:
    """Config with the bot on (admin ADMIN), X off; `sections` override."""
    telegram_section = {"enabled": True, "api_base": fake.url, "token": TOKEN,
                        "admin_ids": [ADMIN], **sections.pop("telegram", {})}
    price_section = {"url": price_api.endpoint, "timeout_s": 2, **sections.pop("price", {})}
    return write_config(directory, price=price_section, telegram=telegram_section, **sections)


def database_of(config_dir: Path) -> Path:
    return config_dir / "state" / "buzzbotd.db"


def minute_of(when: datetime) -> datetime:
    return when.replace(second=0, microsecond=0)


def seed_reminders(database: Path | DaemonDatabase, n: int, first_due: datetime,
                   spread_s: float = 0, first_user: int = FIRST_SEEDED_USER,
                   chat_id: int | None = None) -> list[int]:
    """n users, each with one daily UTC reminder; reminder i is due at the minute of
    first_due + i*spread_s/n. One bulk transaction (100k rows in about a second on
    SQLite). Returns the user ids (= their private chat ids). With `chat_id` (a
    group, < 0), every reminder is for that chat. `database`: a SQLite file, or
    either backend (tests/support/backends.py)."""
    db = as_database(database)
    db.create()
    now = utc_text(datetime.now(UTC))
    users, rows = [], []
    for i in range(n):
        user = first_user + i
        due = minute_of(first_due + timedelta(seconds=spread_s * i / max(n, 1)))
        users.append(user)
        rows.append((user, chat_id or user, due.strftime("%H:%M"), "UTC", utc_text(due),
                     now))
    db.executemany("INSERT INTO telegram_user (id, chat_id, timezone, blocked, created_at, "
                   "updated_at) VALUES (?, ?, 'UTC', false, ?, ?)",
                   [(u, chat_id or u, now, now) for u in users])
    db.executemany("INSERT INTO reminder (user_id, chat_id, local_time, timezone, "
                   "next_due_at, enabled, created_at) VALUES (?, ?, ?, ?, ?, true, ?)", rows)
    return users


def reminder_rows(database: Path | DaemonDatabase) -> list[dict[str, Any]]:
    """Every reminder, read as `buzzbotd status` reads (another process)."""
    return as_database(database).dicts("SELECT * FROM reminder ORDER BY id")


class World:
    """The fakes and one daemon at a time, in `directory`, on `database` (default:
    SQLite in directory/state)."""

    def __init__(self, directory: Path, database: DaemonDatabase | None = None,
                 watchdog_usec: int | None = None, **sections: dict[str, Any]) -> None:
        self.directory = directory
        self.watchdog_usec = watchdog_usec
        self.telegram = FakeTelegram().start()
        self.price = FakePrice().start()
        self.database = database or DaemonDatabase.sqlite(database_of(directory))
        if self.database.url:
            sections = {**sections, "database": {"url": self.database.url}}
        self.config = telegram_config(directory, self.telegram, self.price, **sections)
        self.daemon: Daemon | None = None
        self.notify: NotifySocket | None = None
        self._starts = 0
        # The daemon's clock (running or next started): the real one until a test
        # moves it, so no test waits for a real minute.
        self.clock = FileClock(directory / "clock")

    def start(self, ready_timeout: float = 30) -> Daemon:
        self._starts += 1
        self.notify = NotifySocket(self.directory / f"notify-{self._starts}.sock")
        self.daemon = Daemon(self.config, self.notify, watchdog_usec=self.watchdog_usec,
                             env=self.clock.env)
        self.notify.wait_message("READY=1", timeout=ready_timeout)
        # READY=1 does not wait for Telegram; the bot connects in the background.
        self.daemon.wait_log("connected to Telegram", timeout=ready_timeout)
        return self.daemon

    def stop_daemon(self) -> int:
        assert self.daemon is not None and self.notify is not None
        rc = self.daemon.terminate()
        self.notify.close()
        return rc

    def close(self) -> None:
        if self.daemon is not None:
            self.daemon.kill9()
        if self.notify is not None:
            self.notify.close()
        self.telegram.stop()
        self.price.stop()


class BotInProcess:
    """The real TelegramBot (python-telegram-bot and its rate limiter) and a real
    database owner (SQLite, or `database` on either backend) in this process,
    talking to the fakes, with an injected clock: a reminder round runs when the
    test says, for the instant it says, so a test of several minutes' rounds takes
    seconds. `limiter` and the fake's limits are parameters, e.g. a group window of
    seconds instead of a minute."""

    def __init__(self, directory: Path, limiter: ChatRateLimiter | None = None,
                 database: DaemonDatabase | None = None, price: dict[str, Any] | None = None,
                 **fake_limits: Any) -> None:
        self.telegram = FakeTelegram(**fake_limits).start()
        self.price = FakePrice().start()
        sections: dict[str, Any] = {"price": price or {}}
        if database and database.url:
            sections["database"] = {"url": database.url}
        self.settings = config.load(telegram_config(directory, self.telegram, self.price,
                                                    **sections))
        self.database = database or DaemonDatabase.sqlite(self.settings.daemon.database)
        self.database.create()
        self.clock = ManualClock(minute_of(datetime.now(UTC)))
        self.owner = open_owner(self.settings)
        self.prices = PriceClient(self.settings.price)
        self.bot = TelegramBot(self.settings, self.owner, self.prices, None, report=dict,
                               clock=self.clock, limiter=limiter)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="bot-loop",
                                        daemon=True)

    @property
    def now(self) -> datetime:
        """What the bot's clock reads: the instant of the last round, or the minute it
        was made in."""
        return self.clock.now

    def start(self) -> BotInProcess:
        self.owner.start()
        self._thread.start()
        # What TelegramBot.run does before polling, without the polling: the rounds
        # are driven by the test.
        self.bot.app.loop = self.loop
        self.bot.app.run_in_loop(self.bot.app.application.initialize(), timeout=30)
        self.bot.app.connected = True
        return self

    def round(self, now: datetime) -> reminders.Tally:
        """One reminder round at `now`, as the scheduler's minute job runs it."""
        self.clock.now = now
        return self.bot.dispatch_reminders()

    def close(self) -> None:
        try:
            if self._thread.is_alive():
                self.bot.app.run_in_loop(self.bot.app.application.shutdown(), timeout=30)
                self.loop.call_soon_threadsafe(self.loop.stop)
                self._thread.join(10)
            self.loop.close()
        finally:
            self.owner.stop()
            self.prices.close()
            self.telegram.stop()
            self.price.stop()


def burst(n: int, directory: Path | None = None, database_url: str | None = None
          ) -> dict[str, Any]:
    """n users whose reminders are all due this minute, against the rate-limited fake:
    what arrived, how fast, and how many 429s it cost. With `database_url` (an empty
    PostgreSQL database), the seeded state is moved there with migrate-db first."""
    with tempfile.TemporaryDirectory() as scratch:
        world = World(directory or Path(scratch))
        try:
            due = minute_of(datetime.now(UTC))
            users = seed_reminders(world.database, n, due)
            if database_url is not None:
                _move_to_postgresql(world.config, database_url)
            started = time.monotonic()
            daemon = world.start()
            ok = world.telegram.wait_until(lambda: len(world.telegram.sent) >= n,
                                           timeout=n / 20 + 30)
            daemon.wait_log("reminders due by", timeout=30)    # the round has recorded all
            sent = list(world.telegram.sent)
            per_chat: dict[int, int] = {}
            for message in sent:
                per_chat[message.chat_id] = per_chat.get(message.chat_id, 0) + 1
            times = [m.at for m in sent]
            span = times[-1] - times[0] if len(times) > 1 else 0.0
            now = utc_text(datetime.now(UTC))
            if database_url is None:
                still_due = sum(1 for row in reminder_rows(world.database)
                                if row["next_due_at"] <= now)
            else:
                from buzzbotd.db.pgdriver import load_driver
                with load_driver().connect(database_url, autocommit=True) as conn:
                    still_due = conn.execute("SELECT count(*) FROM reminder WHERE "
                                             "next_due_at <= %s", (now,)).fetchone()[0]
            return {
                "n": n,
                "all_arrived": ok,
                "delivered": len(sent),
                "exactly_once": sorted(per_chat) == users and set(per_chat.values()) == {1},
                "still_due": still_due,
                "msg_per_s": (len(times) - 1) / span if span else 0.0,
                "max_in_any_second": max_in_window(times, 1.0),
                "too_many": dict(world.telegram.too_many),
                "seconds_from_start": (times[-1] - started) if times else None,
                "price_fetches": len(world.price.requests),
                "log": daemon.log,
            }
        finally:
            world.close()


def _move_to_postgresql(config: Path, url: str) -> None:
    """`buzzbotd migrate-db --to url`, then the config points the daemon there."""
    import subprocess
    import sys

    from tests.support import REPO
    subprocess.run([sys.executable, "-m", "buzzbotd", "migrate-db", "--to", url, "--config",
                    str(config)], capture_output=True, text=True, cwd=REPO, timeout=300,
                   check=True)
    with config.open("a") as f:
        f.write(f'[database]\nurl = "{url}"\n')


def max_in_window(times: list[float], window: float) -> int:
    best, low = 0, 0
    for high, at in enumerate(times):
        while at - times[low] >= window:
            low += 1
        best = max(best, high - low + 1)
    return best


def rss_kib_with_reminders(n: int) -> int:
    """VmRSS of the daemon after READY with n reminders stored (none due)."""
    with tempfile.TemporaryDirectory() as scratch:
        world = World(Path(scratch))
        try:
            seed_reminders(world.database, n, datetime.now(UTC) + timedelta(hours=2),
                           spread_s=20 * 3600)
            daemon = world.start()
            world.telegram.wait_for_polls(1)
            return rss_kib(daemon.pid)
        finally:
            world.close()


def due_query_ms(n: int, runs: int = 21) -> dict[str, Any]:
    """The dispatch's due query with n reminders spread over the coming day (about
    n/1440 due a minute): median milliseconds for the first minute's page, and
    SQLite's plan for the query."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "buzzbotd.db"
        start = minute_of(datetime.now(UTC))
        seed_reminders(path, n, start, spread_s=24 * 3600)
        owner = SqliteOwner(path)
        owner.start()
        try:
            now = start + timedelta(seconds=59)
            owner.call(_timed_due_query, now)             # warm the page cache
            timings, rows = [], 0
            for _ in range(runs):
                seconds, rows = owner.call(_timed_due_query, now)
                timings.append(seconds * 1000)
            plan = owner.call(query_plan, now)
        finally:
            owner.stop()
    return {"n": n, "ms": statistics.median(timings), "rows": rows, "plan": plan}


def _timed_due_query(now: datetime) -> tuple[float, int]:
    started = time.perf_counter()
    rows = list(reminders.due_query(now))
    return time.perf_counter() - started, len(rows)


def query_plan(now: datetime) -> list[str]:
    """EXPLAIN QUERY PLAN of the due query, first page and a later one (inside the owner)."""
    from buzzbotd.db.models import database
    plans = []
    for cursor in (None, (now, 1)):
        sql, params = reminders.due_query(now, cursor).sql()
        plans += [row[-1] for row in database.execute_sql(f"EXPLAIN QUERY PLAN {sql}", params)]
    return plans
