"""A daemon with X posting on, pointed at the fake X and price servers.

Shared by the X tests, the crash trials and the benchmarks: no pytest here.
"""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from buzzbotd.timeofday import slot_key
from tests.fakes.price import FakePrice
from tests.fakes.x import CREDENTIALS, FakeX
from tests.support import REPO, Daemon, FileClock, write_config

TEMPLATE = "BTC ${price:,.2f} ({change_24h:+.2f}%) at {time}"


def x_config(directory: Path, x: FakeX, price: FakePrice, times: list[str],
             grace_s: int = 600, telegram: dict[str, Any] | None = None,
             database_url: str = "", listen: str = "", **x_settings: Any) -> Path:
    """Config with X on at `times` (UTC); Telegram off unless a `telegram` section is
    given; SQLite unless `database_url` names a PostgreSQL database; HTTP off unless
    `listen` is given."""
    return write_config(directory, price={"url": price.endpoint, "timeout_s": 2},
                        x={"enabled": True, "api_base": x.url, "times": times,
                           "timezone": "UTC", "grace_s": grace_s, "template": TEMPLATE,
                           **CREDENTIALS, **x_settings},
                        telegram=telegram or {"enabled": False},
                        **({"database": {"url": database_url}} if database_url else {}),
                        **({"http": {"listen": listen}} if listen else {}))


def slot_in(seconds: float) -> datetime:
    """A whole-second UTC instant `seconds` from now."""
    return (datetime.now(UTC) + timedelta(seconds=seconds)).replace(microsecond=0)


# A slot test's daemon runs on a clock the test moves (BUZZBOTD_TEST_CLOCK=file:…):
# it starts BEFORE_S ahead of its slot however slow its start is (seconds of fsyncs
# on this VM's disk or a Pi's SD card), and the test moves it to LEAD_S before the
# slot once the daemon has begun its work. The scheduler looks at the clock on each
# beat, every WATCHDOG_USEC/6 (0.33 s here): the jump is seen well within LEAD_S.
SLOT_BEFORE_S = 300.0
SLOT_LEAD_S = 1.0
SLOT_WATCHDOG_USEC = 2_000_000


class SlotClock(FileClock):
    """The clock of a daemon under test, for a slot `due` (its config's time).

    The daemon reads the real clock plus `offset` from the file; so does the fake X
    it is given (tweets' `created_at`, which the timeline's start_time filters on),
    as X and the daemon share one clock in life. The fakes record requests at real
    instants (`Request.at`): compare them with `real(...)`."""

    def __init__(self, directory: Path, x: FakeX | None = None,
                 before_s: float = SLOT_BEFORE_S) -> None:
        super().__init__(directory / "clock")
        self.due = slot_in(before_s)
        if x is not None:
            x.clock = self.now

    def daemon_args(self, watchdog_usec: int = SLOT_WATCHDOG_USEC,
                    **env: str) -> dict[str, Any]:
        """Daemon(...)/spawn(...) keywords: this clock, a scheduler beat often enough
        to see it move, and any other `env`."""
        return {"watchdog_usec": watchdog_usec, "env": {**self.env, **env}}

    def arrive(self, daemon: Daemon, lead: float = SLOT_LEAD_S, timeout: float = 30) -> float:
        """Once `daemon` has begun its work (its "first start" line: the slot is
        scheduled; on PostgreSQL it leads), moves the clock to `lead` seconds before
        the slot. Returns the real epoch at which the daemon's clock reads `due`."""
        daemon.wait_log("first start", timeout)
        return self.set_to(self.due - timedelta(seconds=lead))

    def set_to(self, instant: datetime) -> float:
        """Makes the clock read `instant` now and run on from it; returns the real
        epoch at which it reads `due`."""
        self.move_to(instant)
        return self.real(self.due)


def hhmmss(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%H:%M:%S")


def expected_text(price: float, change: float, when: datetime) -> str:
    """The tweet for a slot at `when`: "… at 14:37:05 UTC", or "… at 14:37 UTC" on the minute."""
    seconds = ":%S" if when.second else ""
    return TEMPLATE.format(price=price, change_24h=change,
                           time=when.astimezone(UTC).strftime(f"%H:%M{seconds} UTC"))


def status_json(config: Path) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "buzzbotd", "status", "--json",
                          "--config", str(config)], capture_output=True, text=True,
                         cwd=REPO, timeout=30, check=True)
    return json.loads(out.stdout)


def post_row(config: Path, key: str) -> dict[str, Any] | None:
    rows = status_json(config)["x"]["last_posts"]
    return next((row for row in rows if row["slot_key"] == key), None)


FINAL_LINES = (": posted", ": failed", ": skipped")


def wait_final(daemon: Daemon, key: str, timeout: float, after: float = 0.0) -> str:
    """The journal line that settles slot `key`."""
    return daemon.wait_log_any(tuple(f"slot {key}{end}" for end in FINAL_LINES), timeout,
                               after)


def kill_at(point: str, daemon: Daemon, key: str, x: FakeX, due: datetime,
            jitter: tuple[float, float], rng: random.Random,
            waits: dict[str, Callable[[], None]] | None = None) -> None:
    """Kills `daemon` with kill -9 at `point` of slot `key`'s life (the crash and
    failover trials): "stored" (X stored the tweet, its answer never leaves),
    "claimed" or "sending" (the slot's journal line), "delay" (a random moment
    `jitter` seconds around `due`), a point of `waits` (its function returns once
    the point is reached), else whenever the daemon exits by itself. A point never
    reached is an AssertionError naming it."""
    if point == "stored":
        x.on_store = lambda tweet: daemon.proc.kill()
    try:
        if point in ("claimed", "sending"):
            daemon.wait_log(f"slot {key}: {point}", timeout=30)
        elif point == "delay":
            # The moment itself is the randomness: a sleep is the point, not a hope.
            time.sleep(max(due.timestamp() - time.time() + rng.uniform(*jitter), 0))
        elif waits and point in waits:
            waits[point]()
        else:
            daemon.proc.wait(30)
    except (AssertionError, subprocess.TimeoutExpired) as e:
        raise AssertionError(f"waiting to kill at {point!r}: {e}") from None
    finally:
        daemon.kill9()
        x.on_store = None


def tweets_per_slot(x: FakeX, texts: dict[str, str]) -> Counter:
    """For each slot key → its text, how many tweets X holds; counted as 0/1/2+."""
    stored = Counter(x.texts())
    return Counter(min(stored[text], 2) for text in texts.values())


def seed_posts(path: Path, now: datetime, days: int = 40) -> int:
    """Four posted slots a day with a price, `days` back from now; returns how many
    fall within the chart's 30 days."""
    db = sqlite3.connect(path)
    shown = 0
    with db:
        for i in range(days * 4):
            due = (now - timedelta(hours=6 * (i + 1))).replace(minute=0, second=0,
                                                                 microsecond=0)
            key = slot_key(due)
            text = f"seeded {i}"
            db.execute("INSERT INTO post (slot_key, kind, due_at, state, text, price, tweet_id, "
                       "attempts, created_at, updated_at) VALUES (?, 'scheduled', ?, 'posted', "
                       "?, ?, ?, 1, ?, ?)", (key, key, text, 60000 + 37 * (i % 50), str(10 + i),
                                             key, key))
            shown += due > now - timedelta(days=30)
    db.close()
    return shown
