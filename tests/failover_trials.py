"""Randomized failover trials: two daemons on one PostgreSQL database (SPEC
"Database: SQLite or PostgreSQL, and a standby"), the leader kill -9'd at a
random point of claim → post → confirm or of a reminder round.

Two seats, each with its own state directory (so its own lock file) and its
own URLs of the fake X and the fake Telegram (so every request is known to
be the one daemon's or the other's; one bot token). Each trial:

  - picks an instant T on a whole minute of the daemons' clock (shifted with
    BUZZBOTD_TEST_CLOCK so that T is ~9 s away: the slot and the minute's
    reminder round come together, without waiting for real minutes), seeds
    REMINDERS users whose reminder is due at T, and gives both seats a slot
    at T;
  - starts one seat (the leader: they alternate), then the other (READY as a
    standby), and kills the leader with SIGKILL on its `slot <key>: claimed`
    or `sending` journal line, inside X's handler once the tweet is stored
    (before the answer), at a random delay around T, or after a random
    number of the round's reminders reached Telegram;
  - waits for the survivor's "leader now" line (the takeover time, from the
    kill), for the slot to be settled and every reminder to have arrived,
    then restarts the killed seat, which must come back as a standby.

The result counts slots with 0, 1 and 2+ tweets (only 1 is right: 0 is a
slot lost within grace), reminders with 0, 1 and 2+ messages (delivery is
at-least-once: 2 is possible for one killed between Telegram's answer and
the record), getUpdates calls that overlapped another live one (must be 0),
and the takeover times.

    python -m tests.failover_trials 20        # make bench runs 100
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from buzzbotd.db.models import utc_text
from buzzbotd.db.postgres import PostgresOwner, load_driver
from buzzbotd.timeofday import slot_key
from tests.crash_trials import LEDGER_ROWS, tweets_per_row
from tests.fakes.price import FakePrice
from tests.fakes.telegram import TOKEN, FakeTelegram
from tests.fakes.x import FakeX
from tests.harness import Daemon, NotifySocket
from tests.telegram_world import ADMIN
from tests.x_world import hhmmss, kill_at, x_config

KILL_POINTS = ("claimed", "sending", "stored", "delay", "reminders")
REMINDERS = 4               # per trial, all due at T
LEAD_S = 9.0                # from a trial's start to T (two daemons start meanwhile)
FIRST_USER = 50_000_000


class Seat:
    """One daemon's place: its directory, its URLs of the fakes, its process."""

    def __init__(self, name: str, workdir: Path, telegram_url: str, x_url: str) -> None:
        self.name, self.dir = name, workdir / name
        self.telegram_url, self.x_url = telegram_url, x_url
        self.daemon: Daemon | None = None
        self.notify: NotifySocket | None = None
        self.starts = 0

    def configure(self, x: FakeX, price: FakePrice, url: str, due: datetime) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        bot = {"enabled": True, "api_base": self.telegram_url, "token": TOKEN,
               "admin_ids": [ADMIN]}
        self.config = x_config(self.dir, x, price, [hhmmss(due)], telegram=bot,
                               database_url=url, api_base=self.x_url)

    def start(self, env: dict[str, str]) -> Daemon:
        self.starts += 1
        self.notify = NotifySocket(self.dir / f"notify{self.starts}.sock")
        self.daemon = Daemon(self.config, self.notify, env=env)
        self.notify.wait_message("READY=1", timeout=60)
        return self.daemon

    def standing_by(self) -> bool:
        assert self.notify is not None
        return any(s.startswith("standby: leader") for s in self.notify.statuses())

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.terminate()
            self.daemon = None
        if self.notify is not None:
            self.notify.close()
            self.notify = None


def run_trials(n: int, workdir: Path, url: str, seed: int | None = None) -> dict[str, Any]:
    rng = random.Random(seed)
    x = FakeX(reject_duplicates=False).start()
    price = FakePrice().start()
    telegram = FakeTelegram().start()
    seats = [Seat("a", workdir, telegram.url, x.url),
             Seat("b", workdir, telegram.another_url(), x.another_url())]
    points: Counter = Counter()
    takeovers: list[float] = []
    slots: list[str] = []
    users: list[int] = []
    offset = 0.0
    started = time.monotonic()
    schema = PostgresOwner(url)          # the schema, as a first start would make it
    schema.start()
    schema.stop()
    try:
        for trial in range(n):
            point = rng.choice(KILL_POINTS)
            points[point] += 1
            # T: the first whole minute of the daemons' clock at least LEAD_S ahead of
            # now on it; the offset only grows (the ledger's clock never goes back).
            now = datetime.now(UTC) + timedelta(seconds=offset + LEAD_S)
            due = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
            offset = (due - datetime.now(UTC)).total_seconds() - LEAD_S
            env = {"BUZZBOTD_TEST_CLOCK": f"+{offset:.3f}@0"}
            key = slot_key(due)
            slots.append(key)
            mine = _seed_reminders(url, FIRST_USER + trial * REMINDERS, due)
            users += mine
            for seat in seats:
                seat.configure(x, price, url, due)
            leader, standby = seats[trial % 2], seats[1 - trial % 2]
            try:
                took = _trial(point, leader, standby, env, key, due - timedelta(seconds=offset),
                              x, telegram, url, mine, rng)
            except AssertionError as e:
                raise AssertionError(f"trial {trial} (kill at {point!r}): {e}") from None
            finally:
                for seat in seats:
                    seat.stop()
            takeovers.append(took)
    finally:
        for seat in seats:
            seat.stop()
        x.stop()
        price.stop()
        telegram.stop()
    counts = tweets_per_row(_pg(url, LEDGER_ROWS), x)
    per_slot = Counter(counts.get(key, 0) for key in slots)
    sent = Counter(s.chat_id for s in telegram.sent)
    per_user = Counter(min(sent[u], 2) for u in users)
    return {"trials": n, "kill_points": dict(points),
            "slots_with_0": per_slot[0], "slots_with_1": per_slot[1],
            "slots_with_2_or_more": sum(v for c, v in per_slot.items() if c >= 2),
            "reminders": len(users), "reminders_with_0": per_user[0],
            "reminders_with_1": per_user[1], "reminders_with_2_or_more": per_user[2],
            "overlapping_getupdates": len(telegram.overlapping_polls),
            "takeover_median_s": round(statistics.median(takeovers), 2),
            "takeover_max_s": round(max(takeovers), 2),
            "seconds": round(time.monotonic() - started, 1)}


def _trial(point: str, leader: Seat, standby: Seat, env: dict[str, str], key: str,
           due_real: datetime, x: FakeX, telegram: FakeTelegram, url: str,
           users: list[int], rng: random.Random) -> float:
    """One kill and takeover; returns the takeover time (kill → "leader now")."""
    first = leader.start(env)
    assert not leader.standing_by(), f"seat {leader.name} did not lead: {first.log}"
    survivor = standby.start(env)
    assert standby.standing_by(), f"seat {standby.name} is not a standby: {survivor.log}"
    _kill_at(point, first, key, x, telegram, set(users), due_real, rng)
    died = time.monotonic()
    survivor.wait_log("this daemon is the leader now", timeout=15)
    took = time.monotonic() - died
    if _pg(url, f"SELECT 1 FROM post WHERE slot_key = '{key}' AND state IN "
                "('posted', 'failed', 'skipped')") == []:
        from tests.x_world import wait_final
        wait_final(survivor, key, timeout=60)
    wanted = set(users)
    if not telegram.wait_until(lambda: wanted <= {s.chat_id for s in telegram.sent}, 60):
        missing = wanted - {s.chat_id for s in telegram.sent}
        raise AssertionError(f"reminders never sent to {sorted(missing)}:\n{survivor.log}")
    leader.stop()
    again = leader.start(env)                # as systemd restarts it
    assert leader.standing_by(), (f"the restarted seat {leader.name} is not a standby: "
                                  f"{leader.notify.statuses()}\n{again.log}\nthe survivor:"
                                  f"\n{survivor.log}")
    return took


def _kill_at(point: str, daemon: Daemon, key: str, x: FakeX, telegram: FakeTelegram,
             users: set[int], due_real: datetime, rng: random.Random) -> None:
    def in_the_reminder_round() -> None:
        # (counted among this trial's users: on a slow start the round may
        # have begun before the standby was READY)
        k = rng.randint(1, REMINDERS)
        if not telegram.wait_until(
                lambda: sum(s.chat_id in users for s in telegram.sent) >= k, 30):
            raise AssertionError(f"{k} reminders never went out:\n{daemon.log}")

    kill_at(point, daemon, key, x, due_real, (-0.3, 0.6), rng,
            waits={"reminders": in_the_reminder_round})


def _seed_reminders(url: str, first: int, due: datetime) -> list[int]:
    users = list(range(first, first + REMINDERS))
    now = utc_text(datetime.now(UTC))
    with load_driver().connect(url, autocommit=True) as conn, conn.transaction():
        for user in users:
            conn.execute("INSERT INTO telegram_user (id, chat_id, timezone, blocked, "
                         "created_at, updated_at) VALUES (%s, %s, 'UTC', false, %s, %s)",
                         (user, user, now, now))
            conn.execute("INSERT INTO reminder (user_id, chat_id, local_time, timezone, "
                         "next_due_at, enabled, created_at) VALUES (%s, %s, %s, 'UTC', %s, "
                         "true, %s)", (user, user, due.strftime("%H:%M"), utc_text(due), now))
    return users


def _pg(url: str, sql: str) -> list[tuple]:
    with load_driver().connect(url, autocommit=True) as conn:
        return conn.execute(sql).fetchall()


def main(count: int, seed: int | None = None) -> dict[str, Any]:
    from tests.postgres import start_server

    server = start_server()
    try:
        with tempfile.TemporaryDirectory(prefix="buzzbotd-failover-") as tmp:
            return run_trials(count, Path(tmp), server.create_database(), seed)
    finally:
        server.stop()


if __name__ == "__main__":
    print(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20))
