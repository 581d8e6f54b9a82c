"""Randomized failover trials: two daemons on one PostgreSQL database (SPEC
"Database: SQLite or PostgreSQL, and a standby"), the leader kill -9'd at a
random point of claim → post → confirm or of a reminder round.

Two seats, each with its own state directory (so its own lock file) and its
own URLs of the fake X and the fake Telegram (so every request is known to
be the one daemon's or the other's; one bot token). Both daemons run the
whole series, as systemd would run them: the one a trial kills is started
again as the new standby, and the next trial kills the survivor.

Trial k has its instant T_k = T_0 + k minutes: every seat's config has a slot
at each T_k, so the slot and the minute's reminder round come together. The
daemons' clock is one file (BUZZBOTD_TEST_CLOCK=file:…) that a trial moves to
LEAD_S before T_k, so no trial waits for a real minute; a watchdog interval of
WATCHDOG_S makes the scheduler look at the clock often (it notices a jump on
its next beat). Each trial:

  - seeds REMINDERS users whose reminder is due at T_k and moves the clock;
  - kills the leader with SIGKILL on its `slot <key>: claimed` or `sending`
    journal line, inside X's handler once the tweet is stored (before the
    answer), at a random delay around T_k, or after a random number of the
    round's reminders reached Telegram;
  - waits for the survivor's "leader now" line (the takeover time, from the
    kill), restarts the killed seat, waits for every reminder to have
    arrived and for the restarted seat to be READY as a standby;
  - waits until the roles are settled (_settle): one seat's daemon logged
    "leader now", the leadership row names its pid and the advisory lock is
    held; the other seat is READY. The next trial kills that leader.

A leader may also lose its session by itself: its heartbeat gets no answer
for 3 s when this machine's disk or CPU stalls, and it exits (status 1) as it
must (SPEC: a cut-off leader stops within 5 s). That is one more failover,
not a failure: the seat is started again, as systemd would (Restart=
on-failure), the other seat leads, and the result lists each such loss
(`leaderships_lost`). Only while the survivor kept leading must the restarted
seat have come back as a standby. No check of what was posted or sent is
relaxed for it.

A trial does not wait for its slot to be settled: a survivor that found a
`sending` row waits until that POST can no longer land (up to 10 s) before it
reads the timeline, and the next trial may kill it meanwhile, so a kill can
also come in the middle of a settlement. After the last trial every slot must
be settled (its grace, 600 s, is not over by then).

The result counts slots with 0, 1 and 2+ tweets (only 1 is right: 0 is a
slot lost within grace), reminders with 0, 1 and 2+ messages (delivery is
at-least-once: 2 is possible for one killed between Telegram's answer and
the record), getUpdates calls that overlapped another live one (must be 0),
and the takeover times.

    python -m tools.failover_trials 20        # make trials runs 20, make test 3, make bench 100
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
from buzzbotd.db.pgdriver import load_driver
from buzzbotd.db.postgres import PostgresOwner
from buzzbotd.timeofday import slot_key
from tests.fakes.price import FakePrice
from tests.fakes.telegram import FakeTelegram
from tests.fakes.x import FakeX
from tests.support import Daemon, FileClock, wait_until
from tests.support.x_world import kill_at
from tools.crash_trials import LEDGER_ROWS, tweets_per_row
from tools.failover_seats import LEADER_NOW, LOST, Seat, pg, record_lost, settle

KILL_POINTS = ("claimed", "sending", "stored", "delay", "reminders")
REMINDERS = 4               # per trial, all due at T_k
LEAD_S = 1.0                # from the clock's move to T_k
BEFORE_FIRST_S = 300.0      # the clock while the daemons first start: T_0 minus this
FIRST_USER = 50_000_000


def run_trials(n: int, workdir: Path, url: str, seed: int | None = None) -> dict[str, Any]:
    rng = random.Random(seed)
    x = FakeX(reject_duplicates=False).start()
    price = FakePrice().start()
    telegram = FakeTelegram().start()
    seats = [Seat("a", workdir, telegram.url, x.url),
             Seat("b", workdir, telegram.another_url(), x.another_url())]
    first = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=2)
    slots = [first + timedelta(minutes=k) for k in range(n)]
    clock = FileClock(workdir / "clock")       # the daemons' clock: its offset only grows
    clock.move_to(first - timedelta(seconds=BEFORE_FIRST_S))
    env = clock.env
    x.clock = clock.now
    points: Counter = Counter()
    chosen: list[str] = []
    lengths: list[float] = []
    takeovers: list[float] = []
    lost: list[str] = []                  # leaderships lost by themselves (stalls)
    users: list[int] = []
    started = time.monotonic()
    schema = PostgresOwner(url)          # the schema, as a first start would make it
    schema.start()
    schema.stop()
    try:
        for seat in seats:
            seat.configure(x, price, url, slots)
        seats[0].start(env)                    # a leads (alone), then b stands by
        seats[1].start(env)
        leader, standby = settle(seats[0], seats[1], url, env, lost, "start")
        a = seats[0].daemon
        if not lost and a is not None and "cannot reach PostgreSQL yet" not in a.log:
            # (else a stall decided who leads: a lost its session, or its first try failed)
            assert leader is seats[0], f"seat a did not lead: {a.log}"
            assert standby.came_back_as_standby(), (
                f"seat b is not a standby: {standby.notify and standby.notify.statuses()}")
        for trial, due in enumerate(slots):
            point = rng.choice(KILL_POINTS)
            points[point] += 1
            chosen.append(point)
            began = time.monotonic()
            mine = _seed_reminders(url, FIRST_USER + trial * REMINDERS, due)
            users += mine
            clock.move_to(due - timedelta(seconds=LEAD_S))
            due_real = datetime.fromtimestamp(clock.real(due), UTC)
            try:
                took, leader, standby = _trial(point, leader, standby, env, slot_key(due),
                                               due_real, x, telegram, url, mine, rng,
                                               lost, f"trial {trial}")
            except AssertionError as e:
                raise AssertionError(f"trial {trial} (kill at {point!r}): {e}") from None
            if took is not None:
                takeovers.append(took)
            lengths.append(time.monotonic() - began)
        keys = [slot_key(due) for due in slots]
        wait_until(lambda: not _unsettled(url, keys), 60,
                   lambda: f"slots never settled: {_unsettled(url, keys)}", interval=0.2)
    finally:
        for seat in seats:
            seat.stop()
        x.stop()
        price.stop()
        telegram.stop()
    counts = tweets_per_row(pg(url, LEDGER_ROWS), x)
    per_slot = Counter(counts.get(slot_key(due), 0) for due in slots)
    repeated = [f"{k}:{chosen[k]}" for k, due in enumerate(slots)
                if counts.get(slot_key(due), 0) != 1]
    sent = Counter(s.chat_id for s in telegram.sent)
    per_user = Counter(min(sent[u], 2) for u in users)
    return {"trials": n, "kill_points": dict(points),
            "slots_with_0": per_slot[0], "slots_with_1": per_slot[1],
            "slots_with_2_or_more": sum(v for c, v in per_slot.items() if c >= 2),
            "slots_not_1": repeated,             # trial:kill point, to look into
            "reminders": len(users), "reminders_with_0": per_user[0],
            "reminders_with_1": per_user[1], "reminders_with_2_or_more": per_user[2],
            "overlapping_getupdates": len(telegram.overlapping_polls),
            "takeovers_timed": len(takeovers),
            "takeover_median_s": round(statistics.median(takeovers), 2) if takeovers else None,
            "takeover_max_s": round(max(takeovers), 2) if takeovers else None,
            "leaderships_lost": lost,            # by themselves (stalls), not by a kill
            "trial_median_s": round(statistics.median(lengths), 1),
            "trial_max_s": round(max(lengths), 1),
            "seconds": round(time.monotonic() - started, 1)}


def _trial(point: str, leader: Seat, standby: Seat, env: dict[str, str], key: str,
           due_real: datetime, x: FakeX, telegram: FakeTelegram, url: str,
           users: list[int], rng: random.Random, lost: list[str], label: str
           ) -> tuple[float | None, Seat, Seat]:
    """One kill and takeover. Returns the takeover time (kill → the survivor's
    "leader now"; None if the survivor lost its session by itself before it led)
    and the settled roles (leader, standby) for the next trial."""
    assert leader.daemon is not None and standby.daemon is not None
    survivor = standby.daemon
    try:
        _kill_at(point, leader.daemon, key, x, telegram, set(users), due_real, rng)
    except AssertionError:
        if leader.lost_by_itself() is None:
            raise
        record_lost(leader, f"{label}, before its kill", lost)       # it never reached the point
    died = time.monotonic()
    line = survivor.wait_log_any((LEADER_NOW, LOST), timeout=15)
    took = time.monotonic() - died if LEADER_NOW in line else None
    leader.launch(env)                       # as systemd restarts it, while the survivor catches up
    wanted = set(users)
    if not telegram.wait_until(lambda: wanted <= {s.chat_id for s in telegram.sent}, 60):
        missing = wanted - {s.chat_id for s in telegram.sent}
        raise AssertionError(f"reminders never sent to {sorted(missing)}:\n{survivor.log}")
    again = leader.ready()
    now_leader, now_standby = settle(standby, leader, url, env, lost, label)
    if now_leader.daemon is survivor:
        # The survivor led throughout (a loss ends its process): the killed seat
        # must have come back as a standby.
        assert now_standby is leader and leader.came_back_as_standby(), (
            f"the restarted seat {leader.name} is not a standby: {leader.notify.statuses()}"
            f"\n{again.log}\nthe survivor:\n{survivor.log}")
    return took, now_leader, now_standby


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


def _unsettled(url: str, keys: list[str]) -> list[str]:
    """The slots whose row is not final yet."""
    final = {key for key, in pg(url, "SELECT slot_key FROM post WHERE state IN "
                                      "('posted', 'failed', 'skipped')")}
    return [key for key in keys if key not in final]


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


def main(count: int, seed: int | None = None) -> dict[str, Any]:
    from tests.support.postgres import start_server

    server = start_server()
    try:
        with tempfile.TemporaryDirectory(prefix="buzzbotd-failover-") as tmp:
            return run_trials(count, Path(tmp), server.create_database(), seed)
    finally:
        server.stop()


if __name__ == "__main__":
    print(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20))
