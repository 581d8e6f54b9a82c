"""A stand-in for CoinGecko's `simple/price` endpoint.

`set_price(p, change)` sets what it serves, in USD; the other currencies asked
for in `vs_currencies` follow at RATES (an unknown one is left out, as
CoinGecko does). `serve_raw(body)` serves anything (malformed JSON, a negative
price…) until set_price is called again. `delay_s` makes every good answer come
that much later (a slow API), so that requests overlap; faults from
tests.fakes.base apply to ROUTE. The exchanges' fakes (tests/fakes/exchanges.py)
use the same RATES, so that the sources agree unless a test says otherwise.
"""

from __future__ import annotations

import time
from typing import Any

from tests.fakes.base import FakeAPI, Request, Response

ROUTE = "GET /api/v3/simple/price"
RATES = {"usd": 1.0, "eur": 0.92, "gbp": 0.79, "jpy": 150.0}


class FakePrice(FakeAPI):
    name = "price"

    def __init__(self, price: float = 67890.12, change_24h: float = -1.23) -> None:
        super().__init__()
        self.body: Any = None
        self.delay_s = 0.0
        self.set_price(price, change_24h)

    def set_price(self, price: float, change_24h: float) -> None:
        self.price, self.change_24h = price, change_24h
        self.body = None

    def serve_raw(self, body: Any) -> None:
        self.body = body

    @property
    def endpoint(self) -> str:
        return (f"{self.url}/api/v3/simple/price?ids=bitcoin&vs_currencies=usd"
                "&include_24hr_change=true")

    def handle(self, request: Request) -> Response:
        if self.route(request) != ROUTE:
            return Response(404, {"error": "not found"})
        if self.delay_s:
            time.sleep(self.delay_s)      # this request's own server thread
        if self.body is not None:
            return Response(200, self.body)
        asked = (request.query.get("vs_currencies") or ["usd"])[0].split(",")
        coin: dict[str, float] = {}
        for code in asked:
            if code in RATES:
                coin[code] = round(self.price * RATES[code], 2)
                coin[f"{code}_24h_change"] = self.change_24h
        return Response(200, {"bitcoin": coin})
