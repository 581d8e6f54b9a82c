"""The Bitcoin price, from `price.url` (CoinGecko's `simple/price` shape).

A fetch times out after `price.timeout_s`, is retried with exponential
backoff and jitter on network errors, 429 and 5xx, and its answer is checked
strictly: `{"bitcoin": {"usd": <positive finite>, "usd_24h_change": <finite>}}`.
Anything else is a PriceError — the caller logs it and never tweets it.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from buzzbotd import __version__, tls
from buzzbotd.config import PriceSettings
from buzzbotd.metrics import METRICS
from buzzbotd.scheduler import utc_now

log = logging.getLogger("buzzbotd.price")
ATTEMPTS = 3
BACKOFF_S = 0.5          # first wait; doubles each retry, plus up to 50% jitter


class PriceError(Exception):
    """The price could not be fetched, or the answer was not a usable price."""


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


class PriceClient:
    def __init__(self, settings: PriceSettings, attempts: int = ATTEMPTS,
                 backoff_s: float = BACKOFF_S, clock: Callable[[], datetime] = utc_now,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.url = settings.url
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.clock = clock
        self.sleep = sleep
        self._http = httpx.Client(timeout=settings.timeout_s, verify=tls.context(),
                                  headers={"User-Agent": f"buzzbotd/{__version__}"})
        self._cache_lock = threading.Lock()
        self._cached: Quote | None = None

    def fetch(self) -> Quote:
        """A fresh quote, retried; raises PriceError after the last attempt fails."""
        for attempt in range(1, self.attempts + 1):
            try:
                quote = self._fetch_once()
            except _Retryable as e:
                if attempt == self.attempts:
                    METRICS.problem("price", f"{e} (after {attempt} attempts)")
                    raise PriceError(f"{e} (after {attempt} attempts)") from None
                wait = self.backoff_s * 2 ** (attempt - 1) * (1 + random.random() / 2)
                log.warning("<price> attempt %d failed: %s; retrying in %.1fs", attempt, e, wait)
                self.sleep(wait)
            else:
                with self._cache_lock:
                    self._cached = quote
                METRICS.clear("price")
                return quote
        raise AssertionError("unreachable")

    def latest(self, max_age_s: float) -> Quote:
        """The last quote if younger than `max_age_s`, else a fresh one: many /price
        requests in a minute cost one fetch."""
        with self._cache_lock:
            cached = self._cached
        if cached and (self.clock() - cached.fetched_at).total_seconds() < max_age_s:
            return cached
        return self.fetch()

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
        if response.status_code == 429 or response.status_code >= 500:
            raise _Retryable(f"HTTP {response.status_code}")
        if response.status_code != 200:
            raise PriceError(f"HTTP {response.status_code}: {_clip(response.text)}")
        try:
            data = response.json()
        except ValueError:
            raise PriceError(f"not JSON: {_clip(response.text)}") from None
        return parse_quote(data, self.clock())


class _Retryable(Exception):
    pass


def _number(coin: dict[str, Any], key: str) -> float:
    value = coin.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PriceError(f"expected a number at bitcoin.{key}, got {_clip(value)}")
    if not math.isfinite(value):
        raise PriceError(f"expected a finite number at bitcoin.{key}, got {value!r}")
    return float(value)


def _clip(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "…"
