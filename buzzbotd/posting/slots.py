"""Each slot on every network the operator chose: X (poster.py), Bluesky and
Mastodon (driver.py with their clients) and a Telegram channel (channel.py).

Every network has its own ledger row per slot and its own runner; a slot runs
them concurrently, a thread each (named `post-<network>`), so that one
network's failure, slowness or refusal never delays, blocks or repeats
another's row. The slot's price is fetched once for all of them (runner.Quotes)
and each network's template rendered once. `post_now` (/post; /tweet its alias)
posts now to every network under one key.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from buzzbotd import timeofday
from buzzbotd.clock import Clock
from buzzbotd.config import Settings
from buzzbotd.db import DatabaseOwner, meta
from buzzbotd.db.models import Post
from buzzbotd.posting.driver import NetworkDriver
from buzzbotd.posting.runner import Quotes, SlotRunner, claim_manual

if TYPE_CHECKING:
    from buzzbotd.posting.bluesky import Session
    from buzzbotd.price import PriceClient

log = logging.getLogger("buzzbotd.posting")
T = TypeVar("T")


class Slots:
    def __init__(self, settings: Settings, owner: DatabaseOwner, clock: Clock,
                 quotes: Quotes) -> None:
        self.settings = settings
        self.posts = settings.posts
        self.owner = owner
        self.clock = clock
        self.quotes = quotes
        self.runners: list[SlotRunner] = []

    def add(self, runner: SlotRunner) -> None:
        """Before the first run."""
        self.runners.append(runner)

    def add_channel(self, send: Callable[[str, str, float], int]) -> None:
        """The Telegram channel's runner, once the bot (whose `send` it uses) is built."""
        from buzzbotd.posting.channel import ChannelClient
        client = ChannelClient(self.settings.telegram.channel, send, self.clock)
        self.add(NetworkDriver(client, self.settings, self.owner, self.quotes, self.clock))

    @property
    def networks(self) -> list[str]:
        return [runner.network for runner in self.runners]

    def next_slot(self, now: datetime) -> datetime:
        return timeofday.next_occurrence(self.posts.times, self.posts.zone, now)

    def run_due(self) -> None:
        """Every network's due slots, each network in its own thread."""
        self._each(lambda runner: runner.run_due())

    def post_now(self, request: str | None = None) -> list[Post]:
        """/post: the price now, on every network, under one key (runner.claim_manual);
        the rows as they ended (or stand, if another thread is settling one)."""
        key, now = claim_manual(self.runners, self.owner, self.clock, request)
        rows = self._each(lambda runner: runner.drive_alone(key, "manual", now))
        return [row for row in rows if row is not None]

    def stop(self) -> None:
        for runner in self.runners:
            runner.stop()

    def _each(self, work: Callable[[SlotRunner], T]) -> list[T | None]:
        """`work` for every runner at once, a named thread each; waits for all. A
        runner's exception is logged and ends only its own thread."""
        results: list[T | None] = [None] * len(self.runners)

        def run(i: int, runner: SlotRunner) -> None:
            try:
                results[i] = work(runner)
            except Exception:
                log.exception("posting to %s failed unexpectedly", runner.network)

        threads = [threading.Thread(target=run, args=(i, runner), name=f"post-{runner.network}",
                                    daemon=True) for i, runner in enumerate(self.runners)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return results


BLUESKY_SESSION = "bluesky.session"     # meta: the Bluesky session (tokens: never shown)


def build(settings: Settings, owner: DatabaseOwner, prices: PriceClient, clock: Clock
          ) -> Slots:
    """The runners of the networks enabled in `settings` (but the channel's, which
    needs the bot: `add_channel`); each client imported only when its network is on."""
    quotes = Quotes(prices)
    slots = Slots(settings, owner, clock, quotes)
    if settings.x.enabled:
        from buzzbotd.posting.poster import Poster  # tweepy is imported only when X is on
        slots.add(Poster(settings, owner, prices, clock=clock, quotes=quotes))
    if settings.bluesky.enabled:
        from buzzbotd.posting.bluesky import BlueskyClient
        b = settings.bluesky
        client = BlueskyClient(b.service, b.handle, b.app_password,
                               session=_stored_session(owner, b.handle),
                               on_session=lambda session: owner.call(
                                   meta.put, BLUESKY_SESSION, session.to_json()),
                               clock=clock)
        slots.add(NetworkDriver(client, settings, owner, quotes, clock))
    if settings.mastodon.enabled:
        from buzzbotd.posting.mastodon import MastodonClient
        m = settings.mastodon
        slots.add(NetworkDriver(MastodonClient(m.instance, m.access_token, m.visibility,
                                               clock=clock), settings, owner, quotes, clock))
    return slots


def _stored_session(owner: DatabaseOwner, handle: str) -> Session | None:
    """The session kept from an earlier run, if it is this account's."""
    from buzzbotd.posting.bluesky import Session
    text = owner.call(meta.get, BLUESKY_SESSION)
    if not text:
        return None
    try:
        session = Session.from_json(text)
    except ValueError as e:
        log.warning("bluesky: the stored session is unusable (%s); logging in again", e)
        return None
    return session if session.handle == handle else None
