"""Where a quote comes from: CoinGecko's `simple/price` (the primary), and the
fallbacks Coinbase Exchange (product stats) and Kraken (public ticker and OHLC).

Each source makes its requests with the client's one httpx.Client and answers
the same Quote (a price and a 24 h change per currency), or raises `Retryable`
(timeouts, network errors, 429, 5xx: worth another attempt) or PriceError (an
answer that is not a usable price: never retried, never posted).

Shapes, from each service's reference:
- CoinGecko `GET /api/v3/simple/price?ids=bitcoin&vs_currencies=usd,eur&include_24hr_change=true`
  → `{"bitcoin": {"usd": 67890.12, "usd_24h_change": -1.23, "eur": …, "eur_24h_change": …}}`;
  a demo or pro key goes in the header `x-cg-demo-api-key` or, for the host
  pro-api.coingecko.com, `x-cg-pro-api-key` (never the URL: CoinGecko's docs
  warn a key in the query string ends up in logs).
- Coinbase Exchange `GET /products/BTC-USD/stats` → `{"open": "…", "high": "…",
  "low": "…", "last": "…", "volume": "…", "volume_30day": "…"}` (decimal strings;
  open is 24 h ago, a rolling window); errors `{"message": "NotFound"}`.
- Kraken `GET /0/public/Ticker?pair=XBTUSD,XBTEUR` → `{"error": [], "result":
  {"XXBTZUSD": {"c": ["<last>", "<lot>"], …}, …}}`; its `o` is today's (UTC)
  open, not 24 h ago, so the change comes from `GET /0/public/OHLC?pair=XBTUSD&
  interval=60&since=<24 h ago>` (rows `[time, open, high, low, close, vwap,
  volume, count]`). Kraken answers errors with HTTP 200 and `{"error":
  ["EQuery:Unknown asset pair"]}`; `EGeneral:Too many requests` and
  `EService:Unavailable` are worth retrying.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from buzzbotd import retry
from buzzbotd.price.quote import PriceError, Quote, clip, make_quote, number

PRO_HOST = "pro-api.coingecko.com"


class Retryable(Exception):
    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Source(Protocol):
    name: str

    def fetch(self, http: httpx.Client, currencies: Sequence[str], now: datetime) -> Quote:
        ...


def get_json(http: httpx.Client, url: str, headers: dict[str, str] | None = None,
             params: dict[str, str] | None = None) -> Any:
    """GET → decoded JSON; Retryable for what another attempt may cure."""
    try:
        response = http.get(url, headers=headers, params=params)
    except httpx.TimeoutException:
        raise Retryable("timed out") from None
    except httpx.TransportError as e:
        raise Retryable(f"network error: {type(e).__name__}") from None
    if response.status_code == 429:
        raise Retryable("HTTP 429", retry.retry_after_s(response.headers.get("Retry-After")))
    if response.status_code >= 500:
        raise Retryable(f"HTTP {response.status_code}")
    if response.status_code != 200:
        raise PriceError(f"HTTP {response.status_code}: {clip(response.text)}")
    try:
        return response.json()
    except ValueError:
        raise PriceError(f"not JSON: {clip(response.text)}") from None


class CoinGecko:
    name = "coingecko"

    def __init__(self, url: str, api_key: str = "") -> None:
        self.url = url
        self.headers = {}
        if api_key:
            header = "x-cg-pro-api-key" if urlsplit(url).hostname == PRO_HOST \
                else "x-cg-demo-api-key"
            self.headers[header] = api_key

    def fetch(self, http: httpx.Client, currencies: Sequence[str], now: datetime) -> Quote:
        data = get_json(http, with_currencies(self.url, currencies), self.headers)
        coin = data.get("bitcoin") if isinstance(data, dict) else None
        if not isinstance(coin, dict):
            raise PriceError(f'expected {{"bitcoin": {{"usd": …}}}}, got {clip(data)}')
        return make_quote(self.name, {
            code: (number(coin.get(code), f"bitcoin.{code}", positive=True),
                   number(coin.get(f"{code}_24h_change"), f"bitcoin.{code}_24h_change"))
            for code in currencies}, now)


def with_currencies(url: str, currencies: Sequence[str]) -> str:
    """price.url with its vs_currencies set to price.currencies (and the 24 h change on)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if k not in ("vs_currencies", "include_24hr_change")]
    query += [("vs_currencies", ",".join(currencies)), ("include_24hr_change", "true")]
    return urlunsplit(parts._replace(query=urlencode(query, safe=",")))


class Coinbase:
    name = "coinbase"

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")

    def fetch(self, http: httpx.Client, currencies: Sequence[str], now: datetime) -> Quote:
        prices = {}
        for code in currencies:
            product = f"BTC-{code.upper()}"
            stats = get_json(http, f"{self.base}/products/{product}/stats")
            if not isinstance(stats, dict):
                raise PriceError(f"expected an object of stats for {product}, got {clip(stats)}")
            last = number(stats.get("last"), f"{product}.last", positive=True)
            opened = number(stats.get("open"), f"{product}.open", positive=True)
            prices[code] = (last, (last / opened - 1) * 100)
        return make_quote(self.name, prices, now)


KRAKEN_RETRYABLE = ("EGeneral:Too many requests", "EService:Unavailable", "EService:Busy",
                    "EAPI:Rate limit exceeded")


class Kraken:
    name = "kraken"

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")

    def fetch(self, http: httpx.Client, currencies: Sequence[str], now: datetime) -> Quote:
        pairs = [f"XBT{code.upper()}" for code in currencies]
        ticker = self._result(http, "Ticker", {"pair": ",".join(pairs)})
        since = str(int((now - timedelta(hours=24)).timestamp()))
        prices = {}
        for code, pair in zip(currencies, pairs, strict=True):
            last = number(_row(ticker, code, "Ticker").get("c", [None])[0],
                          f"{pair}.c[0]", positive=True)
            rows = _row(self._result(http, "OHLC", {"pair": pair, "interval": "60",
                                                    "since": since}), code, "OHLC")
            if not isinstance(rows, list) or not rows or not isinstance(rows[0], list):
                raise PriceError(f"expected OHLC rows for {pair}, got {clip(rows)}")
            opened = number(rows[0][1] if len(rows[0]) > 1 else None, f"{pair} OHLC open",
                            positive=True)
            prices[code] = (last, (last / opened - 1) * 100)
        return make_quote(self.name, prices, now)

    def _result(self, http: httpx.Client, method: str, params: dict[str, str]) -> Any:
        data = get_json(http, f"{self.base}/0/public/{method}", params=params)
        errors = data.get("error") if isinstance(data, dict) else None
        if errors:
            text = "; ".join(str(e) for e in errors)
            if any(str(e).startswith(KRAKEN_RETRYABLE) for e in errors):
                raise Retryable(f"Kraken: {clip(text)}")
            raise PriceError(f"Kraken: {clip(text)}")
        result = data.get("result") if isinstance(data, dict) else None
        if not isinstance(result, dict):
            raise PriceError(f'expected {{"error": [], "result": {{…}}}}, got {clip(data)}')
        return result


def _row(result: dict[str, Any], code: str, method: str) -> Any:
    """Kraken names pairs its own way (XBTUSD answers as XXBTZUSD): the entry that
    ends with the currency."""
    for name, value in result.items():
        if name != "last" and name.upper().endswith(code.upper()):
            return value if method == "OHLC" or isinstance(value, dict) else {}
    raise PriceError(f"Kraken's {method} has no BTC/{code.upper()} entry "
                     f"(got {clip(sorted(result))})")


def build(settings: Any) -> list[Source]:
    """The primary, then price.fallbacks in order."""
    sources: list[Source] = [CoinGecko(settings.url, settings.api_key.reveal())]
    for name in settings.fallbacks:
        sources.append(Coinbase(settings.coinbase_url) if name == "coinbase"
                       else Kraken(settings.kraken_url))
    return sources
