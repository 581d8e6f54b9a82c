"""What every network's posting shares: which slots are due, one settler per
(slot, network), the slot's price fetched once for all its networks, and the
row's text rendered from it once.

A `SlotRunner` drives one network's ledger rows (ledger.py); its subclass says
how a row is driven to a final state (`_drive_row`): X's exact logic in
poster.py, the other networks' generic driver in driver.py. slots.py runs one
runner per enabled network, each in its own thread, so that no network waits
for another.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from buzzbotd import timeofday
from buzzbotd.clock import TRUST, Clock
from buzzbotd.config import PostsSettings, Settings, XSettings
from buzzbotd.db import DatabaseOwner, meta
from buzzbotd.db.models import Post
from buzzbotd.posting import ledger
from buzzbotd.posting.compose import ComposeError, compose
from buzzbotd.price import PriceError

if TYPE_CHECKING:
    from buzzbotd.price import PriceClient, Quote

Schedule = PostsSettings | XSettings   # times, zone, grace_s, template
QUOTES_KEPT = 32        # slots whose quote is kept (a slot's networks share one)


class Quotes:
    """Each slot's price, fetched once for all of its networks: the first network to
    ask fetches it, the others wait for that fetch and render from the same quote.
    A failed fetch is not kept (the next ask fetches again)."""

    def __init__(self, prices: PriceClient) -> None:
        self.prices = prices
        self._lock = threading.Lock()
        self._fetching: dict[str, threading.Lock] = {}
        self._quotes: OrderedDict[str, Quote] = OrderedDict()
        self.fetches = 0          # how many times the price was fetched (the tests read it)

    def of(self, key: str) -> Quote:
        with self._lock:
            fetching = self._fetching.setdefault(key, threading.Lock())
        with fetching:
            with self._lock:
                if key in self._quotes:
                    return self._quotes[key]
                self.fetches += 1
            quote = self.prices.fetch()             # PriceError: not kept
            with self._lock:
                self._quotes[key] = quote
                while len(self._quotes) > QUOTES_KEPT:
                    old, _ = self._quotes.popitem(last=False)
                    self._fetching.pop(old, None)
            return quote


class SlotRunner:
    """One network's posting of every slot; `network` names its rows."""

    network = ledger.X
    log = logging.getLogger("buzzbotd.posting")

    def __init__(self, settings: Settings, owner: DatabaseOwner, quotes: Quotes,
                 clock: Clock, schedule: Schedule | None = None) -> None:
        # X reads its schedule from [x], which holds [posts]' values once loaded.
        self.posts = schedule or settings.posts
        self.template = schedule.template if schedule else settings.template_of(self.network)
        self.owner = owner
        self.quotes = quotes
        self.clock = clock
        self.grace = timedelta(seconds=self.posts.grace_s)
        self._stop = threading.Event()
        self._prices: dict[str, float] = {}    # slot key → the price its text was made from
        self._settling: set[str] = set()         # keys a thread is settling now
        self._settling_lock = threading.Lock()

    def stop(self) -> None:
        """Ends waits between retries; a slot left open is settled at next start."""
        self._stop.set()

    def next_slot(self, now: datetime) -> datetime:
        return timeofday.next_occurrence(self.posts.times, self.posts.zone, now)

    def run_due(self) -> None:
        """Settles every slot due since the last run: posts those still within
        their window (catch-up after downtime included), skips older ones.
        Slots from before the daemon's very first start are not ours."""
        now = self.clock()
        first = self.owner.call(meta.first_start, now)
        since = max(first, now - max(self.grace, timedelta(days=1)))
        settled = self.owner.call(ledger.final_keys, self.network, since)
        for due in timeofday.occurrences(self.posts.times, self.posts.zone, since, now):
            key = timeofday.slot_key(due)
            if key in settled:
                continue
            if due + self.grace <= now:
                if not TRUST.may_call_missed():
                    continue            # the clock may be ahead: left open (clock.ClockTrust)
                with self._sole_settler(key) as mine:
                    if not mine:
                        continue
                    post = self.owner.call(
                        ledger.skip_missed, self.network, key, "scheduled", due,
                        f"missed: the daemon was not running within {self.posts.grace_s}s "
                        "of the slot", now)
                    if post.state not in ledger.FINAL:
                        # Something was sent: the network says whether it is there.
                        self._drive(key, "scheduled", due)
            else:
                self.drive_alone(key, "scheduled", due)
        since = now - self.grace - timedelta(days=1)
        for post in self.owner.call(ledger.open_rows, self.network, since):
            self.drive_alone(post.slot_key, post.kind, post.due_at)   # e.g. a /post cut short

    def claim_new(self, key: str, now: datetime) -> bool:
        """A /post's row under `key`, claimed if the key is free on this network."""
        with self._sole_settler(key) as mine:
            return mine and self.owner.call(ledger.claim_new, self.network, key, "manual",
                                            now, self.clock()) is not None

    def drive_alone(self, key: str, kind: str, due: datetime) -> Post | None:
        """Drives the slot to a final state, unless another thread already is;
        then returns the row as it stands (None if not claimed yet)."""
        with self._sole_settler(key) as mine:
            if not mine:
                self.log.debug("slot %s on %s: another thread is settling it", key, self.network)
                return self.owner.call(ledger.get, self.network, key)
            return self._drive(key, kind, due)

    # -- one slot ----------------------------------------------------------------

    @contextlib.contextmanager
    def _sole_settler(self, key: str) -> Iterator[bool]:
        """Yields True if this thread is now the only one settling `key`, False
        if another thread already is (then leave the key alone)."""
        with self._settling_lock:
            mine = key not in self._settling
            self._settling.add(key)
        try:
            yield mine
        finally:
            if mine:
                with self._settling_lock:
                    self._settling.discard(key)

    def _drive(self, key: str, kind: str, due: datetime) -> Post:
        """The settling loop; only ever run by the key's sole settler."""
        post = self.owner.call(ledger.claim, self.network, key, kind, due, self.clock())
        try:
            return self._drive_row(post, kind, due)
        except ledger.IllegalMove:
            # Logged by the ledger; the row is whatever the database says.
            return self.owner.call(ledger.get, self.network, key)

    def _drive_row(self, post: Post, kind: str, due: datetime) -> Post:
        raise NotImplementedError

    def _ready(self, post: Post, kind: str, due: datetime, gave_up: Callable[[Post], str]
               ) -> tuple[Post, str | None, float | None]:
        """A claimed row before its POST: failed at the end of the window (`gave_up`
        says why), skipped while paused, or (the row, its text, the price it was made
        from); no text yet (a failed price fetch): (the row as it stands, None, None)."""
        deadline = due + self.grace
        if self.clock() >= deadline:
            return self._finish(post, "failed", gave_up(post)), None, None
        if kind == "scheduled" and self.owner.call(meta.paused_at, due):
            return self._finish(post, "skipped", "posting was paused (/pause) at the slot",
                                alert=False), None, None
        text = post.text or self._compose(post, due)
        if not text:
            return self.owner.call(ledger.get, self.network, post.slot_key), None, None
        price = self._prices.pop(post.slot_key, None)
        if self.clock() >= deadline:
            # A slow price fetch took the slot past its window: no POST now.
            return self._finish(post, "failed", "gave up at the end of the slot's window: "
                                "the price came after it"), None, None
        return post, text, price

    def _compose(self, post: Post, due: datetime) -> str | None:
        """The row's text from the slot's one quote, or None after logging why there
        is none (yet)."""
        try:
            quote = self.quotes.of(post.slot_key)
            self._prices[post.slot_key] = quote.price          # stored with the text, for the chart
            return self._render(quote, timeofday.local_label(due, self.posts.zone))
        except PriceError as e:
            self.owner.call(ledger.note, post, "price-failed", f"no usable price: {e}",
                            self.clock(), logging.ERROR)
        except ComposeError as e:
            self._finish(post, "failed", str(e))
        return None

    def _render(self, quote: Quote, when_label: str) -> str:
        return compose(self.template, quote, when_label, self.network)

    def _finish(self, post: Post, final: str, reason: str, alert: bool = True) -> Post:
        return self.owner.call(ledger.finish, post, final, reason, self.clock(), alert)

    def _wait_until(self, until: datetime, deadline: datetime) -> None:
        """Sleeps until `until` (never past the deadline); stop() cuts it short."""
        seconds = (min(until, deadline) - self.clock()).total_seconds()
        if seconds > 0:
            self._stop.wait(seconds)


_CHOOSING = threading.Lock()        # one /post at a time picks its key and claims it


def claim_manual(runners: list[SlotRunner], owner: DatabaseOwner, clock: Clock,
                 request: str | None = None) -> tuple[str, datetime]:
    """A /post's key, claimed on every runner's network, and its instant. A second
    /post in the same second gets the next key free on every network (`…Z-2`).
    With `request` (what names the /post, e.g. its Telegram update), the key is
    `manual-<request>`: the same request again gets those rows back, never a second
    post."""
    now = clock().replace(microsecond=0)
    with _CHOOSING:
        if request is not None:
            key = f"manual-{request}"
            for runner in runners:
                runner.claim_new(key, now)
            return key, now
        base = f"manual-{timeofday.slot_key(now)}"
        for n in itertools.count(1):
            key = base if n == 1 else f"{base}-{n}"
            if not owner.call(ledger.key_taken, key):
                for runner in runners:
                    runner.claim_new(key, now)
                return key, now
    raise AssertionError("unreachable")
