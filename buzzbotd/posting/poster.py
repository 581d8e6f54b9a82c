"""X posting: one price tweet per slot, exactly once, whatever happens.

The only path to X (x.py is the client: what one request came to).
`Poster.run_due()` (a scheduler job at each slot, and once at start for
catch-up) and `Poster.post_now()` (/tweet) both drive a slot's ledger row
(see ledger.py) to a final state within the slot's window. At most one thread settles a key at a
time: a second settler (run_due finding a /tweet's row open, a catch-up
overlapping a scheduled run) leaves the key to the one already on it and
returns the row as it stands, rather than waiting, since the first one
drives it to a final state anyway and waiting would hold up the later slots.

- claimed → fetch the price, compose, mark `sending` (text stored), POST;
- a definite "not posted" (5xx, 429, connection refused) → back to claimed
  and retried with backoff (a 429 waits for X's reset time);
- an unknown outcome (timeout, dropped connection, or a row found `sending`
  after a crash) → settled first by reading the account's recent tweets for
  the stored text; only if it is absent is the same text posted again, and
  X's 403 "duplicate content" answer to that means it was there after all;
- if X refuses the read (the app's plan: 403 client-not-enrolled; 402; a 429
  resetting after the window), the stored text is posted once more and X's
  duplicate check settles it: 403 "duplicate content" = the first landed, a
  201 = it did not (one tweet either way). A refusal of the plan is
  remembered for READS_REFUSED_FOR: no read is tried meanwhile;
- a 403 "duplicate content" to a first POST whose text another key of the
  ledger posted (a /tweet a minute before a slot at the same price, with a
  template without {time}) is the truth told: `skipped: same text as <key>`.
- X's refusals for good (402 no credits, 429 monthly usage cap, 401, …) fail
  the slot at once with X's title and detail; the ledger's failure alerts.
Reading the timeline costs money on X's pay-per-use plan, so it happens only
for unknown outcomes. Every request's estimated cost is kept (spend.py); a
slot that would pass `x.monthly_budget_usd` is skipped.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta

from buzzbotd import retry, timeofday
from buzzbotd.clock import TRUST, Clock, utc_now
from buzzbotd.config import Settings
from buzzbotd.db import DatabaseOwner, meta
from buzzbotd.db.models import Post
from buzzbotd.ops.health import HEALTH
from buzzbotd.posting import ledger, spend, x
from buzzbotd.posting.compose import ComposeError, compose
from buzzbotd.price import PriceClient, PriceError

log = logging.getLogger("buzzbotd.x")   # the name the journal and the tests know X by
TIMELINE_LOOKBACK = timedelta(minutes=5)  # before the claim, for clock skew
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 30.0
READS_REFUSED_FOR = timedelta(days=1)
ALL_503 = "X answered 503 to every attempt"
LEGACY_FREE = ("X answers 503 to every post: an app on the legacy Free plan can no longer "
               "post; move it to pay-per-use")


class Poster:
    def __init__(self, settings: Settings, owner: DatabaseOwner, prices: PriceClient,
                 clock: Clock = utc_now, client: x.XClient | None = None) -> None:
        self.x = settings.x
        self.owner = owner
        self.prices = prices
        self.clock = clock
        self.spend = spend.Spend(settings.x, owner, clock)
        self.network = x.XNetwork(settings.x, client, self.spend.count)
        self.grace = timedelta(seconds=self.x.grace_s)
        self._stop = threading.Event()
        self._prices: dict[str, float] = {}    # slot key → the price its text was made from
        self._settling: set[str] = set()         # keys a thread is settling now
        self._settling_lock = threading.Lock()

    def stop(self) -> None:
        """Ends waits between retries; a slot left open is settled at next start."""
        self._stop.set()

    # -- entry points ----------------------------------------------------------

    def next_slot(self, now: datetime) -> datetime:
        return timeofday.next_occurrence(self.x.times, self.x.zone, now)

    def run_due(self) -> None:
        """Settles every slot due since the last run: posts those still within
        their window (catch-up after downtime included), skips older ones.
        Slots from before the daemon's very first start are not ours."""
        now = self.clock()
        first = self.owner.call(meta.first_start, now)
        since = max(first, now - max(self.grace, timedelta(days=1)))
        settled = self.owner.call(ledger.final_keys, ledger.X, since)
        for due in timeofday.occurrences(self.x.times, self.x.zone, since, now):
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
                        ledger.skip_missed, ledger.X, key, "scheduled", due,
                        f"missed: the daemon was not running within {self.x.grace_s}s "
                        "of the slot", now)
                    if post.state not in ledger.FINAL:
                        # Something was sent: the timeline says whether it is there.
                        self._drive(key, "scheduled", due)
            else:
                self._drive_alone(key, "scheduled", due)
        since = now - self.grace - timedelta(days=1)
        for post in self.owner.call(ledger.open_rows, ledger.X, since):
            self._drive_alone(post.slot_key, post.kind, post.due_at)   # e.g. a /tweet cut short

    def post_now(self, request: str | None = None) -> Post:
        """/tweet: posts the price now under its own key, paused or not. A second
        /tweet in the same second gets the next free key (`…Z-2`); if X refuses
        its text as a duplicate, the ledger says which key holds that text. With
        `request` (what names the /tweet, e.g. its Telegram update), the key is
        `manual-<request>`: the same request again gets that post back, never a
        second tweet."""
        now = self.clock().replace(microsecond=0)
        if request is not None:
            key = f"manual-{request}"
            with self._sole_settler(key) as mine:
                if mine and self.owner.call(ledger.claim_new, ledger.X, key, "manual", now,
                                            self.clock()) is not None:
                    return self._drive(key, "manual", now)
            row = self.owner.call(ledger.get, ledger.X, key)
            if row is None:         # another thread is claiming it this instant
                raise RuntimeError(f"/tweet {key} is being posted by another thread")
            return row
        base = f"manual-{timeofday.slot_key(now)}"
        for n in itertools.count(1):
            key = base if n == 1 else f"{base}-{n}"
            with self._sole_settler(key) as mine:
                if mine and self.owner.call(ledger.claim_new, ledger.X, key, "manual", now,
                                            self.clock()) is not None:
                    return self._drive(key, "manual", now)
        raise AssertionError("unreachable")

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

    def _drive_alone(self, key: str, kind: str, due: datetime) -> Post | None:
        """Drives the slot to a final state, unless another thread already is;
        then returns the row as it stands (None if not claimed yet)."""
        with self._sole_settler(key) as mine:
            if not mine:
                log.debug("slot %s: another thread is settling it", key)
                return self.owner.call(ledger.get, ledger.X, key)
            return self._drive(key, kind, due)

    def _drive(self, key: str, kind: str, due: datetime) -> Post:
        """The settling loop; only ever run by the key's sole settler."""
        post = self.owner.call(ledger.claim, ledger.X, key, kind, due, self.clock())
        try:
            return self._drive_row(post, kind, due)
        except ledger.IllegalMove:
            # Logged by the ledger; the row is whatever the database says.
            return self.owner.call(ledger.get, ledger.X, key)

    def _drive_row(self, post: Post, kind: str, due: datetime) -> Post:
        deadline = due + self.grace
        failures = 0
        statuses: set[int | None] = set()        # X's answers to this drive's POSTs
        while post.state not in ledger.FINAL and not self._stop.is_set():
            retry_at = None
            if post.state == "sending":
                post, retry_at = self._settle_unknown(post)
                if post.state == "sending" and self.clock() >= deadline:
                    post = self._finish(post, "failed", "outcome unknown at the end of the "
                                        f"slot's window ({post.reason})")
            elif self.clock() >= deadline:
                post = self._finish(post, "failed", self._gave_up(post, statuses))
            elif kind == "scheduled" and self.owner.call(meta.paused_at, due):
                post = self._finish(post, "skipped", "posting was paused (/pause) at the slot")
            elif text := post.text or self._compose(post, due):
                price = self._prices.pop(post.slot_key, None)
                if self.clock() >= deadline:
                    # A slow price fetch took the slot past its window: no POST now.
                    post = self._finish(post, "failed", "gave up at the end of the slot's "
                                        "window: the price came after it")
                elif post.attempts == 0 and (over := self.spend.refusal(
                        self.network.post_cost(text))):
                    post = self._finish(post, "skipped", over)
                else:
                    post = self.owner.call(ledger.sending, post, text, self.clock(), price)
                    post, retry_at, status = self._post_once(post)
                    statuses.add(status)
            else:
                post = self.owner.call(ledger.get, ledger.X, post.slot_key)
            if post.state not in ledger.FINAL:
                failures += 1
                wait = retry.wait_s(failures, RETRY_FIRST_S, RETRY_MAX_S)
                self._wait_until(retry_at or self.clock() + timedelta(seconds=wait), deadline)
        return post

    def _compose(self, post: Post, due: datetime) -> str | None:
        """The text for a slot, or None after logging why there is none (yet)."""
        try:
            quote = self.prices.fetch()
            self._prices[post.slot_key] = quote.price          # stored with the text, for the chart
            return compose(self.x.template, quote, timeofday.local_label(due, self.x.zone))
        except PriceError as e:
            self.owner.call(ledger.note, post, "price-failed", f"no usable price: {e}",
                            self.clock(), logging.ERROR)
        except ComposeError as e:
            self._finish(post, "failed", str(e))
        return None

    def _post_once(self, post: Post) -> tuple[Post, datetime | None, int | None]:
        """One POST of the row's text; returns the row, for a 429 its reset, and
        the HTTP status of a NotSent answer (None for any other outcome)."""
        result = self.network.post(post.text or "")
        now = self.clock()
        if isinstance(result, x.Posted):
            HEALTH.clear("x_plan")
            return (self.owner.call(ledger.posted, post, result.tweet_id, result.how, now),
                    None, None)
        if isinstance(result, x.Duplicate):
            return self._duplicate(post, result), None, None
        if isinstance(result, x.NotSent):
            if result.not_before and result.not_before > post.due_at + self.grace:
                return self._finish(post, "failed", f"{result.reason}; X's reset "
                                    f"{timeofday.slot_key(result.not_before)} is after the "
                                    "slot's window"), None, None
            return (self.owner.call(ledger.not_sent, post, result.reason, now),
                    result.not_before, result.status)
        if isinstance(result, x.Refused):
            return self._finish(post, "failed", result.reason), None, None
        return self.owner.call(ledger.note, post, "unknown", f"{result.reason}; settling "
                               "before any retry", now), None, None

    def _gave_up(self, post: Post, statuses: set[int | None]) -> str:
        """Why a slot failed at the end of its window; the third slot in a row whose
        every POST X answered with 503 names the likely cause (tweepy#2237)."""
        reason = "gave up at the end of the slot's window" + (
            f" ({post.reason})" if post.reason else "")
        if statuses != {503}:
            return reason
        reason = f"{ALL_503}; {reason}"
        earlier = self.owner.call(ledger.previous_final_reasons, ledger.X, post.slot_key, 2)
        if len(earlier) == 2 and all(r.startswith(ALL_503) for r in earlier):
            reason = f"{ALL_503} of three slots in a row. {LEGACY_FREE}; {reason}"
            # Its own alert: the slot's failure alert may fall in the window of the last.
            HEALTH.problem("x_plan", LEGACY_FREE)
        return reason

    def _duplicate(self, post: Post, result: x.Duplicate) -> Post:
        """X holds this text already: whose tweet is it? Another key's (a /tweet at
        the same price) → this slot has no tweet of its own: skipped. Our own
        earlier attempt (this is not the first POST) → posted. Neither → someone
        posted it outside buzzbotd: skipped too, saying so."""
        other = self.owner.call(ledger.posted_with_text, ledger.X, post.text or "", post.slot_key)
        if other is not None:
            return self._finish(post, "skipped", f"same text as {other.slot_key} ({result.reason})")
        if post.attempts > 1:
            return self.owner.call(ledger.posted, post, None, f"{result.reason}: our earlier "
                                   "attempt is already posted", self.clock())
        return self._finish(post, "skipped", f"same text already on the account, not posted "
                            f"by buzzbotd ({result.reason})")

    def _settle_unknown(self, post: Post) -> tuple[Post, datetime | None]:
        """A row in `sending`: finds its text on the account's timeline (posted),
        proves it absent (back to claimed), or, if X refuses the read, sends it
        back to claimed for one more POST of the same text (X's duplicate check
        settles it). Returns the row and when to look again (a read's 429 reset)."""
        sent_at = self.owner.call(ledger.last_sending_at, post)
        if sent_at is not None:
            # A POST announced moments ago may still be on its way to X: sent by a
            # leader killed right after (a standby takes over in a fraction of a
            # second) or cut off from the database. Its absence proves nothing
            # until it can no longer land, as long as our own POST would wait (never
            # longer: the clock may have been stepped back since).
            now = self.clock()
            left = min((sent_at - now).total_seconds() + x.REQUEST_TIMEOUT_S, x.REQUEST_TIMEOUT_S,
                       (post.due_at + self.grace - now).total_seconds())
            if left > 0:
                self._stop.wait(left)
        now = self.clock()
        refused = self.owner.call(ledger.reads_refused)
        if refused is not None and now - refused[0] < READS_REFUSED_FOR:
            return self._post_again(post, f"timeline reads refused by X since "
                                    f"{timeofday.slot_key(refused[0])} ({refused[1]})"), None
        try:
            # The earlier of the claim and now: a clock stepped back since the claim
            # (NTP on a Pi) must not move the window past the tweet.
            since = min(post.created_at, now) - TIMELINE_LOOKBACK
            found = self.network.find(post.text or "", since)
        except x.ReadRefused as e:
            if e.reset is None:             # the app's plan or credits: for a day
                self.owner.call(ledger.record_reads_refused, e.reason, now)
            elif e.reset <= post.due_at + self.grace:
                return self.owner.call(ledger.note, post, "settle-waits",
                                       f"timeline read refused until X's reset "
                                       f"{timeofday.slot_key(e.reset)}: {e.reason}", now), e.reset
            return self._post_again(post, f"timeline read refused by X: {e.reason}"), None
        except x.READ_ERRORS as e:
            return self.owner.call(ledger.note, post, "settle-failed",
                                   f"cannot read the timeline: {type(e).__name__}: {e}", now), None
        settled = self.owner.call(ledger.posted_as_found, post, found,
                                  "found on the account's timeline after an unknown outcome", now)
        if settled is not None:
            return settled, None
        return self.owner.call(ledger.not_sent, post, "not on the account's timeline: "
                               "the earlier attempt did not post", now), None

    def _post_again(self, post: Post, why: str) -> Post:
        """The timeline cannot say: back to claimed, to POST the same text once more;
        not once the window is over (that POST could be a late tweet): the row
        stays `sending`, and the slot fails with its outcome unknown."""
        now = self.clock()
        if now >= post.due_at + self.grace:
            return self.owner.call(ledger.note, post, "settle-failed", f"{why}; the slot's "
                                   "window is over: no POST to settle it", now)
        return self.owner.call(ledger.not_sent, post, f"{why}; posting the same text once "
                               "more: X's duplicate check tells whether the first landed", now)

    # -- small parts -------------------------------------------------------------

    def _finish(self, post: Post, final: str, reason: str) -> Post:
        return self.owner.call(ledger.finish, post, final, reason, self.clock())

    def _wait_until(self, until: datetime, deadline: datetime) -> None:
        """Sleeps until `until` (never past the deadline); stop() cuts it short."""
        seconds = (min(until, deadline) - self.clock()).total_seconds()
        if seconds > 0:
            self._stop.wait(seconds)
