"""Randomized kill -9 trials along the claim → post → confirm path, with
concurrent /tweets and clock jumps.

Each trial gives the daemon (X and the Telegram bot on) a slot three seconds
ahead; often an admin sends /tweet through the fake Telegram at about the
slot's instant; the daemon's clock may jump (BUZZBOTD_TEST_CLOCK) ahead or
back during the run, or be ahead before the kill and right after it. The
daemon is killed with SIGKILL at a randomly chosen point, restarted, and left
to settle the slot and every /tweet row. X accepts duplicate text here, so a
second POST would show as a second tweet.

In a share of the trials (`refused_share`) X refuses every timeline read
(403 client-not-enrolled, as an app outside the pay-per-use package gets) and,
as in life, refuses a duplicate text: an unknown outcome is then settled by
one more POST. Those trials send no /tweet (a /tweet in the slot's own second
has the slot's text, which X would refuse as a duplicate), and before each
other trial the daemon's memory of the refusal is wiped (as if the operator
had moved the app to pay-per-use), so that those trials read again.

The result counts, for the slots and for the /tweet rows, how many ended with
0, 1 and 2+ tweets (a tweet belongs to the ledger row whose tweet id it is;
a tweet no row claims is an extra one for the row with its text), and how
many slots the ledger holds as posted; and, per mode, the POSTs and timeline
reads each trial took. Only 1 tweet, posted, is right for a slot; a /tweet
killed before it claimed its row may have 0.

    python -m tools.crash_trials 30        # the soak run (make bench runs 100)
    python -m tools.crash_trials 30 0.33   # a third of them with reads refused
"""

from __future__ import annotations

import random
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from buzzbotd.posting.ledger import READS_REFUSED
from buzzbotd.timeofday import slot_key
from tests.fakes.price import FakePrice
from tests.fakes.telegram import TOKEN, FakeTelegram
from tests.fakes.x import FakeX
from tests.support import Daemon, read_sqlite
from tests.support.telegram_world import ADMIN
from tests.support.x_world import hhmmss, kill_at, slot_in, wait_final, x_config

# Where the kill lands: on the journal line of a slot's ledger step, inside X's
# handler after the tweet is stored (before the answer), at a random delay
# around the slot instant, or on a /tweet row's claimed or sending line.
KILL_POINTS = ("claimed", "sending", "stored", "delay", "tweet")
# The daemon's clock: (name, BUZZBOTD_TEST_CLOCK before the kill, after the restart).
JUMPS = ("none", "ahead-then-back", "forward-mid-run", "backward-mid-run", "forward-at-restart")


def run_trials(n: int, workdir: Path, seed: int | None = None,
               refused_share: float = 0.0) -> dict[str, Any]:
    rng = random.Random(seed)
    x = FakeX(reject_duplicates=False).start()
    price = FakePrice().start()
    telegram = FakeTelegram().start()
    bot = {"enabled": True, "api_base": telegram.url, "token": TOKEN, "admin_ids": [ADMIN]}
    slots: list[str] = []
    points: Counter = Counter()
    jumps: Counter = Counter()
    tweets_sent = 0
    database = workdir / "state" / "buzzbotd.db"
    per_trial: dict[str, list[tuple[int, int]]] = {"reads_refused": [], "reads_allowed": []}
    try:
        _first_start(x_config(workdir, x, price, ["03:00"], telegram=bot))
        for _ in range(n):
            refused = rng.random() < refused_share
            x.refuse_reads = x.not_enrolled() if refused else None
            x.reject_duplicates = refused
            if not refused:
                _forget_refused_reads(database)
            point = rng.choice([p for p in KILL_POINTS if not (refused and p == "tweet")])
            jump = rng.choice(JUMPS)
            points[point] += 1
            jumps[jump] += 1
            due = slot_in(3)
            key = slot_key(due)
            slots.append(key)
            before, after = _clock(jump, rng)
            config = x_config(workdir, x, price, [hhmmss(due)], telegram=bot)
            daemon = Daemon(config, env=before)
            tweet = None
            posts_before, reads_before = x.post_attempts, x.timeline_reads
            # A /tweet at about the slot instant (not while reads are refused: see above).
            if not refused and (point == "tweet" or rng.random() < 0.6):
                tweets_sent += 1
                tweet = threading.Timer(max(due.timestamp() + rng.uniform(-0.5, 0.5)
                                            - time.time(), 0),
                                        telegram.inject_message, (ADMIN, "/tweet"))
                tweet.name = "trial-tweet"
                tweet.start()
            try:
                _kill_at(point, daemon, key, x, due, rng)
            finally:
                if tweet is not None:
                    tweet.join()
            _settle_after_restart(config, key, daemon, telegram, after, point)
            per_trial["reads_refused" if refused else "reads_allowed"].append(
                (x.post_attempts - posts_before, x.timeline_reads - reads_before))
    finally:
        x.stop()
        price.stop()
        telegram.stop()
    counts = _tweets_per_row(database, x)
    scheduled = Counter(counts.get(key, 0) for key in slots)
    manual = Counter(c for key, c in counts.items() if key.startswith("manual-"))
    states = dict(read_sqlite(database, "SELECT slot_key, state FROM post"))
    return {"trials": n, "kill_points": dict(points), "clock_jumps": dict(jumps),
            "tweets_sent": tweets_sent,
            "slots_with_0": scheduled[0], "slots_with_1": scheduled[1],
            "slots_with_2_or_more": sum(v for c, v in scheduled.items() if c >= 2),
            "slots_posted": sum(1 for key in slots if states.get(key) == "posted"),
            "manual_rows": sum(manual.values()), "manual_with_0": manual[0],
            "manual_with_2_or_more": sum(v for c, v in manual.items() if c >= 2),
            "post_attempts": x.post_attempts, "timeline_reads": x.timeline_reads,
            **{mode: _per_trial(figures) for mode, figures in per_trial.items()}}


def _per_trial(figures: list[tuple[int, int]]) -> dict[str, Any]:
    """POSTs and timeline reads per trial (the slot, its restart, any /tweet)."""
    if not figures:
        return {"trials": 0}
    posts, reads = [p for p, _ in figures], [r for _, r in figures]
    return {"trials": len(figures), "posts_mean": round(sum(posts) / len(posts), 2),
            "posts_max": max(posts), "reads_mean": round(sum(reads) / len(reads), 2),
            "reads_max": max(reads)}


def _forget_refused_reads(database: Path) -> None:
    """The operator moved the app to pay-per-use: reads are tried again."""
    if not database.exists():
        return
    db = sqlite3.connect(database)
    try:
        with db:
            db.execute("DELETE FROM meta WHERE key = ?", (READS_REFUSED,))
    finally:
        db.close()


def _first_start(config: Path) -> None:
    """The daemon's first start, on a true clock: catch-up never reaches before it,
    so a first start on a clock ahead would disown the first trial's slot."""
    daemon = Daemon(config)
    try:
        daemon.wait_log("ready: ", timeout=30)
    finally:
        daemon.terminate()


def _clock(jump: str, rng: random.Random) -> tuple[dict[str, str], dict[str, str]]:
    """BUZZBOTD_TEST_CLOCK for the run that is killed and for the restart."""
    env = "BUZZBOTD_TEST_CLOCK"
    if jump == "ahead-then-back":          # ahead from the start; true again after the kill
        return {env: f"+{rng.uniform(5, 90):.1f}@0"}, {}
    if jump == "forward-mid-run":          # an NTP step forward near the slot
        return {env: f"+{rng.uniform(5, 120):.1f}@{rng.uniform(0.5, 3.5):.2f}"}, {}
    if jump == "backward-mid-run":         # a step back near the slot (small: it delays it)
        return {env: f"-{rng.uniform(0.5, 3):.2f}@{rng.uniform(0.5, 3.5):.2f}"}, {}
    if jump == "forward-at-restart":
        return {}, {env: f"+{rng.uniform(5, 120):.1f}@0"}
    return {}, {}


def _kill_at(point: str, daemon: Daemon, key: str, x: FakeX, due, rng: random.Random) -> None:
    def at_a_tweet() -> None:
        line = daemon.wait_log("slot manual-", timeout=30)     # its claimed line
        if rng.random() < 0.5:
            manual = line.split("slot ", 1)[1].split(": ", 1)[0]
            daemon.wait_log(f"slot {manual}: sending", timeout=30)

    # "delay": anywhere from just before the slot to well after its POST.
    kill_at(point, daemon, key, x, due, (-0.2, 0.4), rng, waits={"tweet": at_a_tweet})


def _settle_after_restart(config: Path, key: str, killed: Daemon, telegram: FakeTelegram,
                          env: dict[str, str], point: str) -> None:
    """Restarts the daemon and waits until the slot, any /tweet it still had to
    receive, and every open row are settled."""
    tweet_pending = telegram.pending_updates() > 0
    again = Daemon(config, env=env)
    try:
        again.wait_log("ready: ", timeout=30)
        database = config.parent / "state" / "buzzbotd.db"
        if key in _open_keys(database) or not read_sqlite(
                database, f"SELECT 1 FROM post WHERE slot_key = '{key}'"):
            wait_final(again, key, timeout=40)     # not settled before the kill
        if tweet_pending:        # received (again) by this daemon: wait for its answer
            again.wait_log(f"admin {ADMIN}: /tweet ", timeout=40)
        for open_key in _open_keys(database):
            wait_final(again, open_key, timeout=40)
    except AssertionError as e:
        raise AssertionError(f"killed at {point!r} ({env or 'true clock'} after the "
                             f"restart); before the kill:\n{killed.log}\nafter the restart: "
                             f"{e}") from None
    finally:
        again.terminate()


def _open_keys(database: Path) -> list[str]:
    return [key for (key,) in read_sqlite(database, "SELECT slot_key FROM post WHERE state NOT IN "
                                              "('posted', 'failed', 'skipped')")]


def _tweets_per_row(database: Path, x: FakeX) -> dict[str, int]:
    return tweets_per_row(read_sqlite(database, LEDGER_ROWS), x)


LEDGER_ROWS = "SELECT slot_key, state, text, tweet_id FROM post ORDER BY id"


def tweets_per_row(rows: list[tuple], x: FakeX) -> dict[str, int]:
    """Ledger key → tweets on X that are its: the one its tweet id names (or, for a
    row posted with the id unknown, one with its text), plus every tweet no row
    names that has its text (a second POST). `rows`: LEDGER_ROWS' answer."""
    tweets = {t.id: t.text for t in x.tweets}
    named = {tweet_id for _, state, _, tweet_id in rows if state == "posted" and tweet_id}
    counts: dict[str, int] = {}
    for key, state, text, tweet_id in rows:
        if state == "posted" and not tweet_id:
            # Posted with the id unknown (X's duplicate answer to one more POST): the
            # row owns one tweet of its text that no other row names.
            tweet_id = next((i for i, t in tweets.items() if t == text and i not in named), None)
            if tweet_id is not None:
                named.add(tweet_id)
        counts[key] = int(state == "posted" and tweets.get(tweet_id) == text)
    by_text: dict[str, str] = {}
    for key, _, text, _ in rows:              # an orphan goes to a slot before a /tweet
        if text and (text not in by_text or by_text[text].startswith("manual-")):
            by_text[text] = key
    for tweet_id, text in tweets.items():
        if tweet_id not in named:
            owner = by_text.get(text, f"(no row) {text}")
            counts[owner] = counts.get(owner, 0) + 1
    return counts


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    share = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    with tempfile.TemporaryDirectory(prefix="buzzbotd-trials-") as tmp:
        print(run_trials(count, Path(tmp), refused_share=share))
