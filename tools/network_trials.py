"""A daemon posting to all four networks (X, Bluesky, Mastodon, a Telegram
channel) against their fakes, and randomized kill -9 trials of it.

Each trial gives the daemon a slot a few seconds ahead and kills it with
SIGKILL at a random point: on a network's `claimed` or `sending` journal line,
inside a fake right after it stored the post (before its answer leaves), or
at a random delay around the slot. The daemon is restarted and left to settle
every network's row of the slot. Counted per (slot, network): the posts the
network holds with the slot's text. Right is exactly 1 for X, Bluesky and
Mastodon, and at most 1 for the channel (an answer lost there is `unknown`).

    python -m tools.network_trials 20
"""

from __future__ import annotations

import random
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from buzzbotd.timeofday import slot_key
from tests.fakes import Fault
from tests.fakes.bluesky import APP_PASSWORD, CREATE_RECORD, HANDLE, FakeBluesky
from tests.fakes.mastodon import ACCESS_TOKEN, POST_STATUS, FakeMastodon
from tests.fakes.price import FakePrice
from tests.fakes.telegram import TOKEN, FakeTelegram
from tests.fakes.x import CREDENTIALS, FakeX
from tests.support import Daemon, read_sqlite, write_config
from tests.support.telegram_world import ADMIN
from tests.support.x_world import TEMPLATE, hhmmss, slot_in

CHANNEL = -1001234567890
NETWORKS = ("x", "bluesky", "mastodon", "channel")
FINAL = ("posted", "failed", "skipped", "unknown")
KILL_POINTS = ("claimed", "sending", "stored", "delay")


class Networks:
    """The fakes of every network, started; `config` a daemon posting to all."""

    def __init__(self) -> None:
        self.x = FakeX(reject_duplicates=False).start()
        self.price = FakePrice().start()
        self.telegram = FakeTelegram().start()
        self.pds = FakeBluesky().start()
        self.mastodon = FakeMastodon().start()

    def stop(self) -> None:
        for fake in (self.x, self.price, self.telegram, self.pds, self.mastodon):
            fake.stop()

    def config(self, directory: Path, times: list[str], grace_s: int = 600) -> Path:
        return write_config(
            directory, price={"url": self.price.endpoint, "timeout_s": 2},
            posts={"times": times, "timezone": "UTC", "grace_s": grace_s, "template": TEMPLATE},
            x={"enabled": True, "api_base": self.x.url, **CREDENTIALS},
            bluesky={"enabled": True, "service": self.pds.url, "handle": HANDLE,
                     "app_password": APP_PASSWORD},
            mastodon={"enabled": True, "instance": self.mastodon.url,
                      "access_token": ACCESS_TOKEN},
            telegram={"enabled": True, "api_base": self.telegram.url, "token": TOKEN,
                      "admin_ids": [ADMIN], "channel": CHANNEL})

    def posts_of(self, text: str) -> dict[str, int]:
        """How many posts of `text` each network holds."""
        return {"x": self.x.texts().count(text),
                "bluesky": sum(1 for r in self.pds.posts() if r.value.get("text") == text),
                "mastodon": self.mastodon.texts().count(text),
                "channel": self.telegram.messages_to(CHANNEL).count(text)}

    def kill_when_stored(self, network: str, daemon: Daemon) -> None:
        """Kills `daemon` once `network`'s fake has stored the post, before its answer."""
        def kill(request: Any) -> None:
            daemon.proc.kill()
        after = {"after": True, "on_hit": kill}
        if network == "x":
            self.x.on_store = lambda tweet: daemon.proc.kill()
        elif network == "bluesky":
            self.pds.add_fault(CREATE_RECORD, Fault.hang(2, **after))
        elif network == "mastodon":
            self.mastodon.add_fault(POST_STATUS, Fault.hang(2, **after))
        else:
            self.telegram.add_fault("sendMessage", Fault.hang(2, **after))

    def clear(self) -> None:
        self.x.on_store = None
        for fake in (self.pds, self.mastodon, self.telegram):
            fake.clear_faults()


def rows_of(database: Path, key: str) -> dict[str, tuple[str, str]]:
    """network → (state, text) of slot `key`'s rows; none while the daemon has not
    made or migrated its schema yet (a fresh start, an upgrade)."""
    try:
        return {network: (state, text or "") for network, state, text in read_sqlite(
            database, f"SELECT network, state, text FROM post WHERE slot_key = '{key}'")}
    except sqlite3.OperationalError:        # no such table or column yet
        return {}


def wait_settled(database: Path, key: str, daemon: Daemon, timeout: float) -> dict[str, Any]:
    """Every network's row of `key` final; the rows."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = rows_of(database, key) if database.exists() else {}
        if len(rows) == len(NETWORKS) and all(state in FINAL for state, _ in rows.values()):
            return rows
        if daemon.proc.poll() is not None:
            raise AssertionError(f"the daemon exited ({daemon.proc.returncode}):\n{daemon.log}")
        time.sleep(0.2)
    raise AssertionError(f"slot {key} not settled on every network within {timeout}s: "
                         f"{rows_of(database, key)}\n{daemon.log}")


def run_trials(n: int, workdir: Path, seed: int | None = None) -> dict[str, Any]:
    rng = random.Random(seed)
    fakes = Networks()
    database = workdir / "state" / "buzzbotd.db"
    points: Counter = Counter()
    per_network: dict[str, Counter] = {network: Counter() for network in NETWORKS}
    states: dict[str, Counter] = {network: Counter() for network in NETWORKS}
    try:
        first = Daemon(fakes.config(workdir, ["03:00"]))
        try:
            first.wait_log("ready: ", timeout=30)
        finally:
            first.terminate()
        for _ in range(n):
            point = rng.choice(KILL_POINTS)
            network = rng.choice(NETWORKS)
            points[f"{point}:{network}" if point != "delay" else point] += 1
            due = slot_in(4)
            key = slot_key(due)
            config = fakes.config(workdir, [hhmmss(due)])
            daemon = Daemon(config)
            try:
                name = key if network == "x" else f"{key} on {network}"
                if point in ("claimed", "sending"):
                    daemon.wait_log(f"slot {name}: {point}", timeout=30)
                elif point == "stored":
                    fakes.kill_when_stored(network, daemon)
                    daemon.proc.wait(30)
                else:
                    time.sleep(max(due.timestamp() - time.time() + rng.uniform(-0.2, 0.6), 0))
            finally:
                daemon.kill9()
                fakes.clear()
            again = Daemon(config)
            try:
                rows = wait_settled(database, key, again, timeout=60)
            finally:
                again.terminate()
            text = next(text for _, text in rows.values() if text)
            for net, count in fakes.posts_of(text).items():
                per_network[net][min(count, 2)] += 1
                states[net][rows[net][0]] += 1
    finally:
        fakes.stop()
    return {"trials": n, "kill_points": dict(points),
            **{f"{net}_posts": {f"with_{c}" if c < 2 else "with_2_or_more": v
                                for c, v in sorted(per_network[net].items())}
               for net in NETWORKS},
            **{f"{net}_states": dict(states[net]) for net in NETWORKS}}


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    with tempfile.TemporaryDirectory(prefix="buzzbotd-network-trials-") as tmp:
        print(run_trials(count, Path(tmp)))
