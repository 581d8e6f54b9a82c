"""X posting: one price tweet per slot, exactly once, whatever happens.

The only path to X (x.py is the client: what one request came to).
`Poster.run_due()` (runner.py; run by slots.py at each slot, and once at start
for catch-up) and a /post drive a slot's X ledger row (see ledger.py) to a
final state within the slot's window. At most one thread settles a key at a
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

import logging
from datetime import datetime, timedelta

from buzzbotd import retry, timeofday
from buzzbotd.clock import Clock, utc_now
from buzzbotd.config import Settings
from buzzbotd.db import DatabaseOwner
from buzzbotd.db.models import Post
from buzzbotd.ops.health import HEALTH
from buzzbotd.posting import ledger, spend, x
from buzzbotd.posting.runner import Quotes, SlotRunner, claim_manual
from buzzbotd.price import PriceClient

log = logging.getLogger("buzzbotd.x")   # the name the journal and the tests know X by
TIMELINE_LOOKBACK = timedelta(minutes=5)  # before the claim, for clock skew
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 30.0
READS_REFUSED_FOR = timedelta(days=1)
ALL_503 = "X answered 503 to every attempt"
LEGACY_FREE = ("X answers 503 to every post: an app on the legacy Free plan can no longer "
               "post; move it to pay-per-use")


class Poster(SlotRunner):
    """X's SlotRunner (runner.py: which slots are due, one settler per key)."""

    network = ledger.X
    log = log

    def __init__(self, settings: Settings, owner: DatabaseOwner, prices: PriceClient,
                 clock: Clock = utc_now, client: x.XClient | None = None,
                 quotes: Quotes | None = None) -> None:
        super().__init__(settings, owner, quotes or Quotes(prices), clock, settings.x)
        self.x = settings.x
        self.spend = spend.Spend(settings.x, owner, clock)
        self.network_client = x.XNetwork(settings.x, client, self.spend.count)

    def post_now(self, request: str | None = None) -> Post:
        """/tweet on X alone (slots.py posts a /post to every network): the price now
        under its own key, paused or not; see runner.claim_manual for the key."""
        key, now = claim_manual([self], self.owner, self.clock, request)
        row = self.drive_alone(key, "manual", now)
        if row is None:         # another thread is claiming it this instant
            raise RuntimeError(f"/tweet {key} is being posted by another thread")
        return row

    # -- one slot ----------------------------------------------------------------

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
            else:
                post, text, price = self._ready(post, kind, due,
                                                lambda row: self._gave_up(row, statuses))
                if text is not None and post.attempts == 0 and (over := self.spend.refusal(
                        self.network_client.post_cost(text))):
                    post = self._finish(post, "skipped", over)
                elif text is not None:
                    post = self.owner.call(ledger.sending, post, text, self.clock(), price)
                    post, retry_at, status = self._post_once(post)
                    statuses.add(status)
            if post.state not in ledger.FINAL:
                failures += 1
                wait = retry.wait_s(failures, RETRY_FIRST_S, RETRY_MAX_S)
                self._wait_until(retry_at or self.clock() + timedelta(seconds=wait), deadline)
        return post

    def _post_once(self, post: Post) -> tuple[Post, datetime | None, int | None]:
        """One POST of the row's text; returns the row, for a 429 its reset, and
        the HTTP status of a NotSent answer (None for any other outcome)."""
        result = self.network_client.post(post.text or "")
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
            found = self.network_client.find(post.text or "", since)
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
