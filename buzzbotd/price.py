"""The Bitcoin price, from `price.url` (CoinGecko's `simple/price` shape).

A fetch times out after `price.timeout_s`, is retried with exponential
backoff and jitter on network errors, 429 and 5xx, and its answer is checked
strictly: `{"bitcoin": {"usd": <positive finite>, "usd_24h_change": <finite>}}`.
Anything else is a PriceError — the caller logs it and never tweets it.

One PriceClient serves the whole daemon (SPEC "One part's outage never stops
another"), so trouble at the price API does not multiply:
- single flight: whoever asks while a request is in flight waits for that
  request's answer instead of making another, so a crowd of /price costs one;
- a failure is held: after a failed fetch (all its attempts), `latest()` makes
  no request for FAILURE_HOLD_S (doubling with each failure in a row, at most
  FAILURE_HOLD_MAX_S, at least a 429's Retry-After) and raises PriceUnavailable
  carrying the last good quote, so /price answers "as of N min ago" and a 429
  is not prolonged by the askers;
- a slot's tweet needs a price of now: `fetch()` never returns a cached quote
  and is not held back (the poster retries at its own pace within the slot's
  grace), but it joins a request already in flight (started seconds ago at
  most) and its outcome feeds the cache and the hold like any other.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from buzzbotd import __version__, retry
from buzzbotd.config import PriceSettings
from buzzbotd.ops.health import HEALTH
from buzzbotd.ops.metrics import METRICS
from buzzbotd.runtime import tls
from buzzbotd.runtime.scheduler import utc_now

log = logging.getLogger("buzzbotd.price")
ATTEMPTS = 3
BACKOFF_S = 0.5          # first wait; doubles each retry, plus up to 50% jitter
# After a failed fetch, askers get the last good price and no request is made for
# this long; it doubles with each failure in a row. A Pi operator wants /price to
# keep answering during an outage without the bot keeping a 429 alive.
FAILURE_HOLD_S = 30.0
FAILURE_HOLD_MAX_S = 300.0


class PriceError(Exception):
    """The price could not be fetched, or the answer was not a usable price."""

    retry_after_s: float | None = None     # a 429's Retry-After, if it said one


class PriceUnavailable(PriceError):
    """No fresh price now (the API failed, now or a moment ago); `last` is the last good
    quote, if there ever was one, for an answer that says how old it is."""

    def __init__(self, message: str, last: Quote | None) -> None:
        super().__init__(message)
        self.last = last


@dataclass(frozen=True)
class Quote:
    price: float             # USD
    change_24h: float        # percent
    fetched_at: datetime


def parse_quote(data: Any, fetched_at: datetime) -> Quote:
    """Validates a decoded `simple/price` answer; raises PriceError saying what is wrong."""
    coin = data.get("bitcoin") if isinstance(data, dict) else None
    if not isinstance(coin, dict):
        raise PriceError(f'expected {{"bitcoin": {{"usd": …}}}}, got {_clip(data)}')
    price = _number(coin, "usd")
    change = _number(coin, "usd_24h_change")
    if price <= 0:
        raise PriceError(f"expected a positive price, got bitcoin.usd = {price!r}")
    return Quote(price, change, fetched_at)


class _Flight:
    """One request in flight; those who ask meanwhile wait for its answer."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.quote: Quote | None = None
        self.error: Exception | None = None

    def result(self) -> Quote:
        self.done.wait()
        if self.error is not None:
            raise self.error
        assert self.quote is not None
        return self.quote


class PriceClient:
    def __init__(self, settings: PriceSettings, attempts: int = ATTEMPTS,
                 backoff_s: float = BACKOFF_S, clock: Callable[[], datetime] = utc_now,
                 sleep: Callable[[float], None] = time.sleep,
                 hold_s: float = FAILURE_HOLD_S, hold_max_s: float = FAILURE_HOLD_MAX_S) -> None:
        self.url = settings.url
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.clock = clock
        self.sleep = sleep
        self.hold_s, self.hold_max_s = hold_s, hold_max_s    # first hold, and its cap
        self._http = httpx.Client(timeout=settings.timeout_s, verify=tls.context(),
                                  headers={"User-Agent": f"buzzbotd/{__version__}"})
        self._lock = threading.Lock()
        self._cached: Quote | None = None
        self._flight: _Flight | None = None
        self._failures = 0                       # failed fetches in a row
        self._held_until: datetime | None = None
        self._last_error = ""

    def fetch(self) -> Quote:
        """A quote of now: joins the request in flight, else makes one (retried);
        raises PriceError after the last attempt fails."""
        with self._lock:
            flight, leader = self._flight, self._flight is None
            if leader:
                flight = self._flight = _Flight()
        assert flight is not None
        if not leader:
            return flight.result()
        try:
            flight.quote = self._fetch_retried()
            return flight.quote
        except Exception as e:
            flight.error = e
            raise
        finally:
            self._record_fetch(flight)
            flight.done.set()

    def latest(self, max_age_s: float) -> Quote:
        """The last quote if younger than `max_age_s`, else a fresh one (shared with
        whoever else asks now): many /price requests in a minute cost one fetch. While
        the API is failing, raises PriceUnavailable (with the last good quote) without
        making a request until the hold after the last failure is over."""
        now = self.clock()
        with self._lock:
            cached = self._cached
            if cached and (now - cached.fetched_at).total_seconds() < max_age_s:
                return cached
            held = self._flight is None and self._held_until is not None \
                and now < self._held_until
            if held:
                assert self._held_until is not None
                wait = (self._held_until - now).total_seconds()
                raise PriceUnavailable(f"{self._last_error}; not asking again for {wait:.0f}s",
                                       cached)
        try:
            return self.fetch()
        except PriceError as e:
            raise PriceUnavailable(str(e), self._cached) from None

    def _record_fetch(self, flight: _Flight) -> None:
        """Records a finished fetch: the new quote, or the failure and how long to hold."""
        with self._lock:
            self._flight = None
            if flight.quote is not None:
                self._cached, self._failures, self._held_until = flight.quote, 0, None
                return
            self._failures += 1
            hold = retry.step(self._failures, self.hold_s, self.hold_max_s)
            retry_after = flight.error.retry_after_s if isinstance(flight.error, PriceError) \
                else None
            if retry_after:
                hold = max(hold, min(retry_after, self.hold_max_s))
            self._held_until = self.clock() + timedelta(seconds=hold)
            self._last_error = str(flight.error)
        log.warning("<price> fetch failed (%s); askers get the last good price, with no "
                    "new request, for %.0fs", flight.error, hold)

    def _fetch_retried(self) -> Quote:
        for attempt in range(1, self.attempts + 1):
            try:
                quote = self._fetch_once()
            except _Retryable as e:
                if attempt == self.attempts:
                    HEALTH.problem("price", f"{e} (after {attempt} attempts)")
                    error = PriceError(f"{e} (after {attempt} attempts)")
                    error.retry_after_s = e.retry_after_s
                    raise error from None
                wait = retry.wait_s(attempt, self.backoff_s)
                log.warning("<price> attempt %d failed: %s; retrying in %.1fs", attempt, e, wait)
                self.sleep(wait)
            else:
                HEALTH.clear("price")
                return quote
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._http.close()

    def _fetch_once(self) -> Quote:
        started = time.monotonic()
        try:
            return self._fetch_answer()
        except Exception:
            METRICS.inc("price_fetch_errors_total")
            raise
        finally:
            METRICS.observe("price_fetch_seconds", time.monotonic() - started)

    def _fetch_answer(self) -> Quote:
        try:
            response = self._http.get(self.url)
        except httpx.TimeoutException:
            raise _Retryable("timed out") from None
        except httpx.TransportError as e:
            raise _Retryable(f"network error: {type(e).__name__}: {e}") from None
        if response.status_code == 429:
            raise _Retryable("HTTP 429", _seconds(response.headers.get("Retry-After")))
        if response.status_code >= 500:
            raise _Retryable(f"HTTP {response.status_code}")
        if response.status_code != 200:
            raise PriceError(f"HTTP {response.status_code}: {_clip(response.text)}")
        try:
            data = response.json()
        except ValueError:
            raise PriceError(f"not JSON: {_clip(response.text)}") from None
        return parse_quote(data, self.clock())


class _Retryable(Exception):
    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def _seconds(header: str | None) -> float | None:
    """A Retry-After in seconds (the HTTP-date form is not used by price APIs)."""
    try:
        seconds = float(header or "")
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds > 0 else None


def _number(coin: dict[str, Any], key: str) -> float:
    value = coin.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PriceError(f"expected a number at bitcoin.{key}, got {_clip(value)}")
    try:
        number = float(value)
    except OverflowError:       # a JSON integer too big for a float, e.g. 10**400
        number = math.inf
    if not math.isfinite(number):
        raise PriceError(f"expected a finite number at bitcoin.{key}, got {_clip(value)}")
    return number


def _clip(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "…"
