"""X posting: one price tweet per slot, exactly once, whatever happens.

The only path to X. `Poster.run_due()` (a scheduler job at each slot, and
once at start for catch-up) and `Poster.post_now()` (/tweet) both go through
`Poster._settle()`, which drives a slot's ledger row (see ledger.py) to a
final state within the slot's window:

- claimed → fetch the price, compose, mark `sending` (text stored), POST;
- a definite "not posted" (5xx, 429, connection refused) → back to claimed
  and retried with backoff (a 429 waits for X's reset time);
- an unknown outcome (timeout, dropped connection, or a row found `sending`
  after a crash) → settled first by reading the account's recent tweets for
  the stored text; only if it is absent is the same text posted again, and
  X's 403 "duplicate content" answer to that means it was there after all.
Reading the timeline costs money on X's pay-per-use plan, so it happens only
for unknown outcomes.
"""

from __future__ import annotations

import html
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
import tweepy

from buzzbotd import ledger, state, timeofday
from buzzbotd.config import TWEET_MAX_CHARS, Settings, XSettings, render_template
from buzzbotd.db import DatabaseOwner
from buzzbotd.db.models import Post
from buzzbotd.price import PriceClient, PriceError, Quote
from buzzbotd.scheduler import utc_now

log = logging.getLogger("buzzbotd.x")
TWEEPY_HOST = "https://api.twitter.com"   # hard-coded in tweepy.Client.request
REQUEST_TIMEOUT_S = 10.0
TIMELINE_LOOKBACK = timedelta(minutes=5)  # before the claim, for clock skew
TIMELINE_MAX_RESULTS = 20
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 30.0


class _RebasedSession(requests.Session):
    """Sends tweepy's requests to `api_base` instead of its hard-coded host,
    with a timeout (tweepy sets none)."""

    def __init__(self, api_base: str, timeout_s: float) -> None:
        super().__init__()
        self.api_base = api_base.rstrip("/")
        self.timeout_s = timeout_s

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        if url.startswith(TWEEPY_HOST):
            url = self.api_base + url[len(TWEEPY_HOST):]
        kwargs.setdefault("timeout", self.timeout_s)
        return super().request(method, url, *args, **kwargs)


class XClient(tweepy.Client):
    """tweepy's v2 Client, OAuth 1.0a user context, pointed at `x.api_base`."""

    def __init__(self, x: XSettings, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        super().__init__(consumer_key=x.consumer_key.reveal(),
                         consumer_secret=x.consumer_secret.reveal(),
                         access_token=x.access_token.reveal(),
                         access_token_secret=x.access_token_secret.reveal(),
                         return_type=dict, wait_on_rate_limit=False)
        self.session = _RebasedSession(x.api_base, timeout_s)


# What one POST attempt came to.
@dataclass(frozen=True)
class _Posted:
    tweet_id: str | None
    how: str


@dataclass(frozen=True)
class _NotSent:          # surely no tweet: retry (not before `not_before`, if given)
    reason: str
    not_before: datetime | None = None


@dataclass(frozen=True)
class _Unknown:          # may or may not have reached X: settle before retrying
    reason: str


@dataclass(frozen=True)
class _Refused:          # X said no for good (401, 400, a 403 other than duplicate)
    reason: str


class ComposeError(Exception):
    pass


def compose(template: str, quote: Quote, when_label: str) -> str:
    """The tweet text; too long is an error, never a truncated post."""
    text = render_template(template, quote.price, quote.change_24h, when_label)
    if len(text) > TWEET_MAX_CHARS:
        raise ComposeError(f"the tweet would be {len(text)} characters; X allows "
                           f"{TWEET_MAX_CHARS} (x.template)")
    return text


def compose_now(settings: Settings, prices: PriceClient, now: datetime) -> str:
    """What `buzzbotd tweet --dry-run` prints."""
    return compose(settings.x.template, prices.fetch(),
                   timeofday.local_label(now.replace(microsecond=0), settings.x.zone))


class Poster:
    def __init__(self, settings: Settings, owner: DatabaseOwner, prices: PriceClient,
                 clock: Callable[[], datetime] = utc_now, client: tweepy.Client | None = None
                 ) -> None:
        self.x = settings.x
        self.owner = owner
        self.prices = prices
        self.clock = clock
        self.client = client or XClient(settings.x)
        self.grace = timedelta(seconds=self.x.grace_s)
        self._stop = threading.Event()
        self._user_id: str | None = None
        self._prices: dict[str, float] = {}    # slot key → the price its text was made from

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
        first = self.owner.call(state.first_start, now)
        since = max(first, now - max(self.grace, timedelta(days=1)))
        settled = self.owner.call(ledger.final_keys, since)
        for due in timeofday.occurrences(self.x.times, self.x.zone, since, now):
            key = timeofday.slot_key(due)
            if key in settled:
                continue
            if due + self.grace <= now:
                self.owner.call(ledger.skip_missed, key, "scheduled", due,
                                f"missed: the daemon was not running within {self.x.grace_s}s "
                                "of the slot", now)
            else:
                self._settle(key, "scheduled", due)
        for post in self.owner.call(ledger.open_rows, now - self.grace - timedelta(days=1)):
            self._settle(post.slot_key, post.kind, post.due_at)   # e.g. a /tweet cut short

    def post_now(self) -> Post:
        """/tweet: posts the price now under its own key, paused or not."""
        now = self.clock().replace(microsecond=0)
        return self._settle(f"manual-{timeofday.slot_key(now)}", "manual", now)

    # -- one slot ----------------------------------------------------------------

    def _settle(self, key: str, kind: str, due: datetime) -> Post:
        deadline = due + self.grace
        post = self.owner.call(ledger.claim, key, kind, due, self.clock())
        failures = 0
        while post.state not in ledger.FINAL and not self._stop.is_set():
            retry_at = None
            if post.state == "sending":
                post = self._settle_unknown(post)
                if post.state == "sending" and self.clock() >= deadline:
                    post = self._finish(key, "failed", "outcome unknown at the end of the "
                                        f"slot's window ({post.reason})")
            elif self.clock() >= deadline:
                post = self._finish(key, "failed", "gave up at the end of the slot's window"
                                    + (f" ({post.reason})" if post.reason else ""))
            elif kind == "scheduled" and self.owner.call(state.paused_at, due):
                post = self._finish(key, "skipped", "posting was paused (/pause) at the slot")
            elif text := post.text or self._compose(key, due):
                post = self.owner.call(ledger.sending, key, text, self.clock(),
                                       self._prices.pop(key, None))
                post, retry_at = self._post_once(post)
            else:
                post = self.owner.call(ledger.get, key)
            if post.state not in ledger.FINAL:
                failures += 1
                self._wait_until(retry_at or self.clock()
                                 + timedelta(seconds=_backoff(failures)), deadline)
        return post

    def _compose(self, key: str, due: datetime) -> str | None:
        """The text for a slot, or None after logging why there is none (yet)."""
        try:
            quote = self.prices.fetch()
            self._prices[key] = quote.price          # stored with the text, for the chart
            return compose(self.x.template, quote, timeofday.local_label(due, self.x.zone))
        except PriceError as e:
            self.owner.call(ledger.note, key, "price-failed", f"no usable price: {e}",
                            self.clock(), logging.ERROR)
        except ComposeError as e:
            self._finish(key, "failed", str(e))
        return None

    def _post_once(self, post: Post) -> tuple[Post, datetime | None]:
        """One POST of the row's text; returns the row and, for a 429, its reset."""
        result = self._create_tweet(post.text or "")
        now = self.clock()
        key = post.slot_key
        if isinstance(result, _Posted):
            return self.owner.call(ledger.posted, key, result.tweet_id, result.how, now), None
        if isinstance(result, _NotSent):
            if result.not_before and result.not_before > post.due_at + self.grace:
                return self._finish(key, "failed", f"{result.reason}; X's reset "
                                    f"{timeofday.slot_key(result.not_before)} is after the "
                                    "slot's window"), None
            return self.owner.call(ledger.not_sent, key, result.reason, now), result.not_before
        if isinstance(result, _Refused):
            return self._finish(key, "failed", result.reason), None
        self.owner.call(ledger.note, key, "unknown", f"{result.reason}; settling before any "
                        "retry", now)
        return self.owner.call(ledger.get, key), None

    def _create_tweet(self, text: str) -> _Posted | _NotSent | _Unknown | _Refused:
        try:
            answer = self.client.create_tweet(text=text, user_auth=True)
        except tweepy.TooManyRequests as e:
            return _NotSent("429 Too Many Requests", _rate_limit_reset(e.response))
        except tweepy.TwitterServerError as e:
            return _NotSent(f"{e.response.status_code} from X")
        except tweepy.Forbidden as e:
            if any("duplicate" in m.lower() for m in e.api_messages):
                return _Posted(None, "X refused the text as a duplicate: it is already posted")
            return _Refused(f"403 from X: {'; '.join(e.api_messages) or e}")
        except tweepy.HTTPException as e:
            return _Refused(f"{e.response.status_code} from X: "
                            f"{'; '.join(e.api_messages) or e}")
        except requests.RequestException as e:
            if _surely_not_sent(e):
                return _NotSent(f"cannot connect: {type(e).__name__}")
            return _Unknown(f"no answer: {type(e).__name__}")
        return _Posted(str(answer["data"]["id"]), "created")

    def _settle_unknown(self, post: Post) -> Post:
        """A row in `sending`: finds its text on the account's timeline (posted),
        proves it absent (back to claimed), or leaves it as is if X cannot be read."""
        key, now = post.slot_key, self.clock()
        try:
            tweet_id = self._find_on_timeline(post.text or "", post.created_at - TIMELINE_LOOKBACK)
        except (tweepy.TweepyException, requests.RequestException) as e:
            self.owner.call(ledger.note, key, "settle-failed",
                            f"cannot read the timeline: {type(e).__name__}: {e}", now)
            return post
        if tweet_id is not None:
            return self.owner.call(ledger.posted, key, tweet_id,
                                   "found on the account's timeline after an unknown outcome", now)
        return self.owner.call(ledger.not_sent, key, "not on the account's timeline: "
                               "the earlier attempt did not post", now)

    def _find_on_timeline(self, text: str, since: datetime) -> str | None:
        if self._user_id is None:
            self._user_id = str(self.client.get_me(user_auth=True)["data"]["id"])
        answer = self.client.get_users_tweets(
            self._user_id, user_auth=True, max_results=TIMELINE_MAX_RESULTS,
            start_time=since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        for tweet in answer.get("data") or []:
            if html.unescape(tweet["text"]) == text:    # X escapes & < > in returned text
                return str(tweet["id"])
        return None

    # -- small parts -------------------------------------------------------------

    def _finish(self, key: str, final: str, reason: str) -> Post:
        return self.owner.call(ledger.finish, key, final, reason, self.clock())

    def _wait(self, seconds: float, deadline: datetime) -> None:
        self._wait_until(self.clock() + timedelta(seconds=seconds), deadline)

    def _wait_until(self, until: datetime, deadline: datetime) -> None:
        """Sleeps until `until` (never past the deadline); stop() cuts it short."""
        seconds = (min(until, deadline) - self.clock()).total_seconds()
        if seconds > 0:
            self._stop.wait(seconds)


def _backoff(failures: int) -> float:
    base = min(RETRY_FIRST_S * 2 ** (failures - 1), RETRY_MAX_S)
    return base * (1 + random.random() / 2)


def _rate_limit_reset(response: requests.Response) -> datetime | None:
    """When X lets us post again: the window reset, or the 24-hour reset when
    that quota is what ran out."""
    headers = response.headers
    resets = [headers.get("x-rate-limit-reset")]
    for scope in ("user", "app"):
        if headers.get(f"x-{scope}-limit-24hour-remaining") == "0":
            resets.append(headers.get(f"x-{scope}-limit-24hour-reset"))
    epochs = [int(r) for r in resets if r and r.isdigit()]
    return datetime.fromtimestamp(max(epochs) + 1, UTC) if epochs else None


def _surely_not_sent(error: requests.RequestException) -> bool:
    """True when the request cannot have reached X (no connection was made)."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    if isinstance(error, requests.ConnectionError):
        text = repr(error)
        return "NewConnectionError" in text or "NameResolutionError" in text
    return False

