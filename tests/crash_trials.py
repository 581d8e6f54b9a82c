"""Randomized kill -9 trials along the claim → post → confirm path.

Each trial gives the daemon a slot two seconds ahead, kills it with SIGKILL at
a randomly chosen point, restarts it, and lets it settle the slot. X accepts
duplicate text here, so a second POST would show as a second tweet. The
result is how many slots ended with 0, 1 and 2+ tweets: only 1 is right.

    python -m tests.crash_trials 30        # the soak run (make bench runs it too)
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from buzzbotd.timeofday import slot_key
from tests.fakes.price import FakePrice
from tests.fakes.x import FakeX
from tests.harness import Daemon
from tests.x_world import (
    expected_text,
    hhmmss,
    post_row,
    slot_in,
    tweets_per_slot,
    wait_final,
    x_config,
)

# Where the kill lands: on the journal line of a ledger step, inside X's
# handler after the tweet is stored (before the answer), or at a random delay
# around the slot instant.
KILL_POINTS = ("claimed", "sending", "stored", "delay")


def run_trials(n: int, workdir: Path, seed: int | None = None) -> dict[str, object]:
    rng = random.Random(seed)
    x = FakeX(reject_duplicates=False).start()
    price = FakePrice().start()
    texts: dict[str, str] = {}
    points: Counter = Counter()
    try:
        for _ in range(n):
            point = rng.choice(KILL_POINTS)
            points[point] += 1
            due = slot_in(2)
            key = slot_key(due)
            texts[key] = expected_text(67890.12, -1.23, due)
            config = x_config(workdir, x, price, [hhmmss(due)])
            daemon = Daemon(config)
            _kill_at(point, daemon, key, x, due, rng)
            x.on_store = None
            again = Daemon(config)
            try:
                again.wait_log("ready: ", timeout=20)
                row = post_row(config, key)
                if row is None or row["state"] not in ("posted", "failed", "skipped"):
                    wait_final(again, key, timeout=30)   # settled after the restart
            except AssertionError as e:
                raise AssertionError(f"killed at {point!r}; before the kill:\n{daemon.log}\n"
                                     f"after the restart: {e}") from None
            finally:
                again.terminate()
    finally:
        x.stop()
        price.stop()
    per_slot = tweets_per_slot(x, texts)
    return {"trials": n, "kill_points": dict(points),
            "slots_with_0": per_slot[0], "slots_with_1": per_slot[1],
            "slots_with_2_or_more": per_slot[2], "post_attempts": x.post_attempts,
            "timeline_reads": x.timeline_reads}


def _kill_at(point: str, daemon: Daemon, key: str, x: FakeX, due, rng: random.Random) -> None:
    if point == "stored":
        x.on_store = lambda tweet: daemon.proc.kill()
    try:
        if point in ("claimed", "sending"):
            daemon.wait_log(f"slot {key}: {point}", timeout=20)
        elif point == "delay":
            # Anywhere from just before the slot to well after its POST.
            time.sleep(max(due.timestamp() - time.time(), 0) + rng.uniform(-0.2, 0.4))
        else:
            daemon.wait_log(f"slot {key}: ", timeout=20)
            daemon.proc.wait(20)
    finally:
        daemon.kill9()


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    with tempfile.TemporaryDirectory(prefix="buzzbotd-trials-") as tmp:
        print(run_trials(count, Path(tmp)))
