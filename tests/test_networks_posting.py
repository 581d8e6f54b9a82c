"""Every slot, exactly once, on every network (issue 23): the real runners
(posting/slots.py, driver.py) with the real Bluesky and Mastodon clients against
their fakes, the real ledger in a real database, and a clock that runs fast so
that a slot's whole window passes in seconds."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from buzzbotd import config
from buzzbotd.config.keys import Secret
from buzzbotd.db import SqliteOwner, meta
from buzzbotd.db.models import Post
from buzzbotd.ops.metrics import METRICS
from buzzbotd.posting import ledger, slots
from buzzbotd.posting.bluesky import BlueskyClient, Session
from buzzbotd.posting.driver import NetworkDriver
from buzzbotd.posting.mastodon import MastodonClient
from buzzbotd.posting.runner import Quotes
from buzzbotd.price import PriceClient
from tests.fakes import Fault
from tests.fakes.bluesky import APP_PASSWORD, CREATE_RECORD, CREATE_SESSION, HANDLE, FakeBluesky
from tests.fakes.mastodon import ACCESS_TOKEN, POST_STATUS, STATUSES, FakeMastodon
from tests.fakes.price import FakePrice
from tests.support import write_config

DUE = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
KEY = "2026-12-07T08:00:00Z"
GRACE_S = 60


class RunningClock:
    """The daemon's and the fakes' clock: from `start`, `speed` times real time."""

    def __init__(self, start: datetime, speed: float = 1.0) -> None:
        self.start, self.speed, self.t0 = start, speed, time.monotonic()

    def __call__(self) -> datetime:
        return self.start + timedelta(seconds=(time.monotonic() - self.t0) * self.speed)

    def epoch(self) -> float:
        return self().timestamp()


class World:
    def __init__(self, tmp_path: Path, clock: RunningClock) -> None:
        self.clock = clock
        self.price = FakePrice().start()
        self.pds = FakeBluesky(existing_key="500")
        self.mastodon = FakeMastodon()
        for fake in (self.pds, self.mastodon):
            fake.clock = clock.epoch                 # type: ignore[attr-defined]
            fake.start()
        self.settings = config.load(write_config(
            tmp_path, price={"url": self.price.endpoint, "timeout_s": 2},
            posts={"times": ["08:00"], "timezone": "UTC", "grace_s": GRACE_S,
                   "template": "BTC ${price:,.2f} at {time}"},
            bluesky={"enabled": True, "service": self.pds.url, "handle": HANDLE,
                     "app_password": APP_PASSWORD},
            mastodon={"enabled": True, "instance": self.mastodon.url,
                      "access_token": ACCESS_TOKEN}), {})
        self.owner = SqliteOwner(tmp_path / "buzzbotd.db")
        self.owner.start()
        self.owner.call(meta.first_start, DUE - timedelta(days=2))

    def slots(self, networks: tuple[str, ...] = ("bluesky", "mastodon"),
              session: Session | None = None) -> slots.Slots:
        """The runners as slots.build makes them, with 1 s request timeouts."""
        quotes = Quotes(PriceClient(self.settings.price, clock=self.clock))
        made = slots.Slots(self.settings, self.owner, self.clock, quotes)
        clients = {
            "bluesky": lambda: BlueskyClient(self.pds.url, HANDLE, Secret(APP_PASSWORD, "t"),
                                             session=session, clock=self.clock, timeout_s=1.0),
            "mastodon": lambda: MastodonClient(self.mastodon.url, Secret(ACCESS_TOKEN, "t"),
                                               clock=self.clock, timeout_s=1.0)}
        for network in networks:
            made.add(NetworkDriver(clients[network](), self.settings, self.owner, quotes,
                                   self.clock))
        return made

    def row(self, network: str, key: str = KEY) -> Post:
        row = self.owner.call(ledger.get, network, key)
        assert row is not None, f"no {network} row for {key}"
        return row

    def events(self, network: str, key: str = KEY) -> list[str]:
        return self.owner.call(lambda: [e.event for e in self.row(network, key).events])

    def creates(self) -> int:
        return sum(1 for r in self.pds.requests if self.pds.route(r) == CREATE_RECORD)

    def stop(self) -> None:
        self.owner.stop()
        for fake in (self.price, self.pds, self.mastodon):
            fake.stop()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    made = World(tmp_path, RunningClock(DUE + timedelta(seconds=1)))
    yield made
    made.stop()


def posted_count(network: str) -> float:
    return METRICS.snapshot()[0].get(("network_posts_total", (network, "posted")), 0.0)


def test_each_network_posts_the_slot_once_from_one_price_fetch(world: World) -> None:
    before = {network: posted_count(network) for network in ("bluesky", "mastodon")}
    runners = world.slots()
    runners.run_due()
    # (the counters move in the owner's thread after the commit, before its call returns)
    assert {network: posted_count(network) - before[network]
            for network in ("bluesky", "mastodon")} == {"bluesky": 1, "mastodon": 1}
    text = "BTC $67,890.12 at 08:00 UTC"
    assert [r.value["text"] for r in world.pds.posts()] == [text]
    assert world.mastodon.texts() == [text]
    assert len(world.price.requests) == 1 and runners.quotes.fetches == 1
    for network in ("bluesky", "mastodon"):
        row = world.row(network)
        assert (row.state, row.text, row.price) == ("posted", text, 67890.12)
        assert row.url and row.tweet_id
    assert world.row("bluesky").url.startswith("https://bsky.app/profile/")
    runners.run_due()                          # settled: nothing sent again
    assert len(world.pds.posts()) == 1 and len(world.mastodon.texts()) == 1


@pytest.mark.parametrize("network", ["bluesky", "mastodon"])
@pytest.mark.parametrize("fault", ["5xx then accept", "accept then hang", "accept then drop"])
def test_a_fault_then_exactly_one_post(world: World, network: str, fault: str) -> None:
    fake, route = ((world.pds, CREATE_RECORD) if network == "bluesky"
                   else (world.mastodon, POST_STATUS))
    fake.add_fault(route, {"5xx then accept": Fault.status_code(503, {"error": "Unavailable"}),
                           "accept then hang": Fault.hang(3, after=True),
                           "accept then drop": Fault.drop(after=True)}[fault])
    world.slots((network,)).run_due()
    posts = world.pds.posts() if network == "bluesky" else world.mastodon.statuses
    assert len(posts) == 1
    assert world.row(network).state == "posted"
    events = world.events(network)
    requests = sum(1 for r in fake.requests if fake.route(r) == route)
    if fault == "5xx then accept":
        assert requests == 2               # one more once it was known safe (or replayed)
    else:
        assert "unknown" in events and requests <= 2     # settled, never guessed


@pytest.mark.parametrize("network", ["bluesky", "mastodon"])
def test_a_crash_after_the_network_accepted_is_settled_to_one_post(world: World,
                                                                   network: str) -> None:
    """The row was left `sending` (kill -9 while the request was out) and the network
    has the post: the next start settles it, posting nothing again."""
    text = "BTC $67,890.12 at 08:00 UTC"
    now = world.clock()
    row = world.owner.call(lambda: ledger.sending(
        ledger.claim(network, KEY, "scheduled", DUE, now), text, now))
    first = world.slots((network,)).runners[0].client        # type: ignore[attr-defined]
    assert first.post(KEY, text).__class__.__name__ == "Posted"
    if network == "mastodon":
        # Reads refused: the settle posts again under the same Idempotency-Key (replayed).
        world.mastodon.add_fault(STATUSES, Fault.status_code(503, {"error": "busy"}), times=5)
    world.slots((network,)).run_due()
    assert world.row(network).state == "posted"
    assert world.row(network).id == row.id
    if network == "bluesky":
        assert len(world.pds.posts()) == 1 and world.creates() == 1
    else:
        assert world.mastodon.texts() == [text]
        assert sum(1 for r in world.mastodon.requests
                   if world.mastodon.route(r) == POST_STATUS) == 2      # the replay


def test_an_expired_bluesky_session_is_refreshed_once_and_kept(world: World,
                                                               tmp_path: Path) -> None:
    built = slots.build(world.settings, world.owner, PriceClient(world.settings.price),
                        world.clock)
    client = built.runners[0].client                         # type: ignore[attr-defined]
    client.open_session()
    stored = world.owner.call(meta.get, slots.BLUESKY_SESSION)
    assert stored and Session.from_json(stored).handle == HANDLE
    world.pds.expire_tokens("access")
    again = slots.build(world.settings, world.owner, PriceClient(world.settings.price),
                        world.clock)        # a restart: the session from the database
    again.runners = again.runners[:1]
    again.run_due()
    assert len(world.pds.posts()) == 1 and world.row("bluesky").state == "posted"
    assert world.pds.sessions_created == 1 and world.pds.sessions_refreshed == 1
    assert world.owner.call(meta.get, slots.BLUESKY_SESSION) != stored   # the new one kept
    assert sum(1 for r in world.pds.requests if world.pds.route(r) == CREATE_SESSION) == 1


def test_one_network_down_for_the_whole_window_fails_only_its_row(tmp_path: Path) -> None:
    world = World(tmp_path, RunningClock(DUE + timedelta(seconds=1), speed=20.0))
    try:
        world.mastodon.add_fault(POST_STATUS, Fault.status_code(503, {"error": "down"}),
                                 times=1000)
        runners = world.slots()
        started = time.monotonic()
        runners.run_due()
        assert world.row("mastodon").state == "failed"
        assert "end of the slot's window" in (world.row("mastodon").reason or "")
        assert world.mastodon.texts() == []
        bluesky = world.row("bluesky")
        assert bluesky.state == "posted" and len(world.pds.posts()) == 1
        # On time: Bluesky's post went out in the slot's first seconds, not after the
        # window Mastodon spent retrying.
        assert (bluesky.updated_at - DUE).total_seconds() < 20 * 2
        assert time.monotonic() - started < 30
    finally:
        world.stop()


def test_a_post_now_is_one_key_for_every_network(world: World) -> None:
    runners = world.slots()
    rows = runners.post_now("2026-12-07T08:00:01Z-u7")
    assert [(row.network, row.state) for row in rows] == [("bluesky", "posted"),
                                                           ("mastodon", "posted")]
    assert {row.slot_key for row in rows} == {"manual-2026-12-07T08:00:01Z-u7"}
    assert [row.id for row in runners.post_now("2026-12-07T08:00:01Z-u7")] == \
        [row.id for row in rows]                              # the same update: no second post
    plain = runners.post_now()
    second = runners.post_now()
    assert plain[0].slot_key != second[0].slot_key and second[0].slot_key.endswith("-2")
    assert len(world.pds.posts()) == 3 and len(world.mastodon.texts()) == 3


def test_a_refused_app_password_fails_only_bluesky_naming_the_key(world: World,
                                                                  tmp_path: Path) -> None:
    quotes = Quotes(PriceClient(world.settings.price, clock=world.clock))
    runners = slots.Slots(world.settings, world.owner, world.clock, quotes)
    runners.add(NetworkDriver(BlueskyClient(world.pds.url, HANDLE, Secret("wrong-pass", "t"),
                                            clock=world.clock, timeout_s=1.0),
                              world.settings, world.owner, quotes, world.clock))
    runners.add(NetworkDriver(MastodonClient(world.mastodon.url, Secret(ACCESS_TOKEN, "t"),
                                             clock=world.clock, timeout_s=1.0),
                              world.settings, world.owner, quotes, world.clock))
    runners.run_due()
    bluesky = world.row("bluesky")
    assert bluesky.state == "failed" and "bluesky.app_password" in (bluesky.reason or "")
    assert "wrong-pass" not in (bluesky.reason or "")
    assert world.pds.posts() == [] and world.row("mastodon").state == "posted"
