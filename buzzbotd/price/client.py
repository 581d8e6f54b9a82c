"""The one price client: every part (posting, /price, reminders, alerts) asks it.

A quote comes from the primary source (CoinGecko's `simple/price`, at
`price.url`, with `price.api_key` in a header), else from the fallbacks in
order (`price.fallbacks`: Coinbase Exchange, Kraken), each tried with
`retry.wait_s` between attempts and a 429's Retry-After honoured (a source that
asks for longer than RETRY_AFTER_MAX_S is left for the next one). Every answer
is checked strictly (buzzbotd.price.sources); anything else is a PriceError —
the caller logs it and never posts it.

Never a wrong price: a quote more than JUMP_RATIO away from the last good one
(younger than JUMP_WINDOW) is confirmed by another source, within
CONFIRM_RATIO, before it is returned; unconfirmed, it is a PriceError.

One PriceClient serves the whole daemon (SPEC "One part's outage never stops
another"), so trouble at the price API does not multiply:
- single flight: whoever asks while a request is in flight waits for that
  request's answer instead of making another, so a crowd of /price costs one;
- a failure is held: after a failed fetch (all its attempts), `latest()` makes
  no request for FAILURE_HOLD_S (doubling with each failure in a row, at most
  FAILURE_HOLD_MAX_S, at least a 429's Retry-After) and raises PriceUnavailable
  carrying the last good quote, so /price answers "as of N min ago" and a 429
  is not prolonged by the askers;
- a slot's post needs a price of now: `fetch()` never returns a cached quote
  and is not held back (the poster retries at its own pace within the slot's
  grace), but it joins a request already in flight (started seconds ago at
  most) and its outcome feeds the cache and the hold like any other.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import httpx

from buzzbotd import __version__, retry
from buzzbotd.clock import utc_now
from buzzbotd.config import PriceSettings
from buzzbotd.ops.health import HEALTH
from buzzbotd.ops.metrics import METRICS
from buzzbotd.price import sources
from buzzbotd.price.quote import PriceError, PriceUnavailable, Quote
from buzzbotd.runtime import tls

log = logging.getLogger("buzzbotd.price")
ATTEMPTS = 3
BACKOFF_S = 0.5          # first wait; doubles each retry (buzzbotd.retry)
RETRY_AFTER_MAX_S = 10.0  # a 429 asking for longer: the next source, not a long wait
JUMP_RATIO = 0.20        # a quote this far from the last good one needs a second source
JUMP_WINDOW = timedelta(hours=1)     # ... while the last good one is younger than this
CONFIRM_RATIO = 0.05     # the second source agrees if it is within this of the first
# After a failed fetch, askers get the last good price and no request is made for
# this long; it doubles with each failure in a row. A Pi operator wants /price to
# keep answering during an outage without the bot keeping a 429 alive.
FAILURE_HOLD_S = 30.0
FAILURE_HOLD_MAX_S = 300.0


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
        self.sources = sources.build(settings)
        self.currencies = settings.currencies
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
            flight.quote = self._fetch_checked()
            return flight.quote
        except Exception as e:
            flight.error = e
            raise
        finally:
            self._record_fetch(flight)
            flight.done.set()

    def last_quote(self) -> Quote | None:
        """The last good quote (for `status`: its source and age), without asking."""
        return self._cached

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

    def _fetch_checked(self) -> Quote:
        """A quote from the first source that answers, confirmed if it jumped."""
        errors = []
        retry_after = None          # the longest a source asked for: the hold's floor
        for index, source in enumerate(self.sources):
            try:
                quote = self._fetch_retried(source)
            except PriceError as e:
                errors.append(f"{source.name}: {e}" if len(self.sources) > 1 else str(e))
                if e.retry_after_s is not None:
                    retry_after = max(retry_after or 0.0, e.retry_after_s)
                continue
            HEALTH.clear("price")
            if errors:
                log.warning("<price> %s; the quote comes from %s", "; ".join(errors),
                            source.name)
            return self._confirmed(quote, self.sources[index + 1:] + self.sources[:index])
        message = "; ".join(errors)
        HEALTH.problem("price", message)
        error = PriceError(message)
        error.retry_after_s = retry_after
        raise error

    def _confirmed(self, quote: Quote, others: list[sources.Source]) -> Quote:
        """`quote`, unless it is more than JUMP_RATIO from a recent last good quote and
        no other source confirms it (then PriceError: never a wrong price posted)."""
        last = self._cached
        if (last is None or quote.fetched_at - last.fetched_at >= JUMP_WINDOW
                or abs(quote.price / last.price - 1) <= JUMP_RATIO):
            return quote
        jump = f"{quote.source} says {quote.price:,.2f}, {(quote.price / last.price - 1):+.0%} " \
               f"from the last good {last.price:,.2f} ({last.source})"
        said = []
        for source in others:
            try:
                second = self._fetch_retried(source)
            except PriceError as e:
                said.append(f"{source.name}: {e}")
                continue
            if abs(second.price / quote.price - 1) <= CONFIRM_RATIO:
                log.warning("<price> %s; confirmed by %s (%.2f)", jump, source.name,
                            second.price)
                return quote
            said.append(f"{source.name} says {second.price:,.2f}")
        reason = f"{jump}; not confirmed by a second source ({'; '.join(said) or 'none'})"
        log.error("<price> %s: not used", reason)
        METRICS.inc("price_fetch_errors_total")
        raise PriceError(reason)

    def _fetch_retried(self, source: sources.Source) -> Quote:
        for attempt in range(1, self.attempts + 1):
            try:
                quote = self._fetch_once(source)
            except sources.Retryable as e:
                too_long = e.retry_after_s is not None and e.retry_after_s > RETRY_AFTER_MAX_S
                if attempt == self.attempts or too_long:
                    error = PriceError(f"{e} (after {attempt} attempts)")
                    error.retry_after_s = e.retry_after_s
                    raise error from None
                wait = retry.wait_s(attempt, self.backoff_s, retry_after=e.retry_after_s)
                log.warning("<price> %s attempt %d failed: %s; retrying in %.1fs",
                            source.name, attempt, e, wait)
                self.sleep(wait)
            else:
                METRICS.inc("price_quotes_total", label=source.name)
                return quote
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._http.close()

    def _fetch_once(self, source: sources.Source) -> Quote:
        started = time.monotonic()
        try:
            return source.fetch(self._http, self.currencies, self.clock())
        except Exception:
            METRICS.inc("price_fetch_errors_total")
            raise
        finally:
            METRICS.observe("price_fetch_seconds", time.monotonic() - started)
