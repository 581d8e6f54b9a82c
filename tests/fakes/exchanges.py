"""Stand-ins for the price fallbacks: Coinbase Exchange's product stats and
Kraken's public Ticker and OHLC, answering their documented shapes.

Shapes (each service's API reference; error bodies as real clients record them):
- Coinbase `GET /products/BTC-USD/stats` → `{"open": "66000.00", "high": …,
  "low": …, "last": "67890.12", "volume": …, "volume_30day": …}`, decimal
  strings; an unknown product 404 `{"message": "NotFound"}`; a limit 429
  `{"message": "Public rate limit exceeded"}`.
- Kraken `GET /0/public/Ticker?pair=XBTUSD,XBTEUR` → HTTP 200 `{"error": [],
  "result": {"XXBTZUSD": {"a": […], "b": […], "c": ["<last>", "<lot>"], "v": …,
  "p": …, "t": …, "l": …, "h": …, "o": "<today's open>"}}}`; `GET
  /0/public/OHLC?pair=XBTUSD&interval=60&since=T` → `{"error": [], "result":
  {"XXBTZUSD": [[time, "open", "high", "low", "close", "vwap", "volume", count],
  …], "last": time}}`; errors are HTTP 200 with `{"error":
  ["EQuery:Unknown asset pair"]}` (or `EGeneral:Too many requests`).

Both serve `set_price(usd, change_24h)` at tests.fakes.price.RATES, so that
they agree with the CoinGecko fake unless a test sets them apart.
"""

from __future__ import annotations

from tests.fakes.base import FakeAPI, Request, Response
from tests.fakes.price import RATES

COINBASE_ROUTE = "GET /products/BTC-USD/stats"
KRAKEN_TICKER = "GET /0/public/Ticker"
KRAKEN_OHLC = "GET /0/public/OHLC"
# Kraken's own names for its BTC pairs (the "Z" is its prefix for fiat).
KRAKEN_NAMES = {"usd": "XXBTZUSD", "eur": "XXBTZEUR", "gbp": "XXBTZGBP", "jpy": "XXBTZJPY"}


class _Quoting(FakeAPI):
    def __init__(self, price: float = 67890.12, change_24h: float = -1.23) -> None:
        super().__init__()
        self.set_price(price, change_24h)

    def set_price(self, price: float, change_24h: float) -> None:
        self.price, self.change_24h = price, change_24h

    def last_and_open(self, code: str) -> tuple[float, float]:
        last = self.price * RATES[code]
        return last, last / (1 + self.change_24h / 100)


class FakeCoinbase(_Quoting):
    name = "coinbase"

    def handle(self, request: Request) -> Response:
        parts = request.path.strip("/").split("/")
        if (request.method != "GET" or len(parts) != 3 or parts[0] != "products"
                or parts[2] != "stats"):
            return Response(404, {"message": "NotFound"})
        base, _, quote = parts[1].partition("-")
        if base != "BTC" or quote.lower() not in RATES:
            return Response(404, {"message": "NotFound"})
        last, opened = self.last_and_open(quote.lower())
        return Response(200, {"open": f"{opened:.2f}", "high": f"{max(last, opened):.2f}",
                              "low": f"{min(last, opened):.2f}", "last": f"{last:.2f}",
                              "volume": "8914.61288503", "volume_30day": "254719.23918497"})


class FakeKraken(_Quoting):
    name = "kraken"

    def handle(self, request: Request) -> Response:
        pairs = (request.query.get("pair") or [""])[0].split(",")
        codes = []
        for pair in pairs:
            code = pair[3:].lower() if pair.startswith("XBT") else ""
            if code not in KRAKEN_NAMES:
                return Response(200, {"error": ["EQuery:Unknown asset pair"]})
            codes.append(code)
        route = self.route(request)
        if route == KRAKEN_TICKER:
            result = {}
            for code in codes:
                last, opened = self.last_and_open(code)
                result[KRAKEN_NAMES[code]] = {
                    "a": [f"{last + 0.1:.1f}", "1", "1.000"], "b": [f"{last - 0.1:.1f}", "2",
                                                                    "2.000"],
                    "c": [f"{last:.1f}", "0.00030000"], "v": ["1000.0", "2500.0"],
                    "p": [f"{last:.1f}", f"{last:.1f}"], "t": [10000, 25000],
                    "l": [f"{min(last, opened):.1f}"] * 2, "h": [f"{max(last, opened):.1f}"] * 2,
                    "o": f"{last:.1f}"}     # today's open (UTC): not the 24 h one
            return Response(200, {"error": [], "result": result})
        if route == KRAKEN_OHLC and len(codes) == 1:
            since = int((request.query.get("since") or ["0"])[0])
            last, opened = self.last_and_open(codes[0])
            rows = [[since + 3600 * i, f"{opened if i == 0 else last:.1f}", f"{last:.1f}",
                     f"{last:.1f}", f"{last:.1f}", f"{last:.1f}", "12.5", 300]
                    for i in range(25)]
            return Response(200, {"error": [], "result": {KRAKEN_NAMES[codes[0]]: rows,
                                                          "last": since + 3600 * 23}})
        return Response(200, {"error": ["EGeneral:Unknown method"]})
