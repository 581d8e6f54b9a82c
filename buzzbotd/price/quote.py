"""A quote: the Bitcoin price in each configured currency, its 24 h change, and
which source said so; and the errors a fetch ends in."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from buzzbotd.runtime.text import shorten


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
    price: float             # in the first of price.currencies (the default currency)
    change_24h: float        # percent, in that currency
    fetched_at: datetime
    source: str = "coingecko"
    # (code, price, change_24h) of every currency fetched, the first one included.
    currencies: tuple[tuple[str, float, float], ...] = ()

    def price_in(self, code: str) -> tuple[float, float]:
        """(price, change_24h) in `code`; the default currency's if it was not fetched."""
        for name, price, change in self.currencies:
            if name == code:
                return price, change
        return self.price, self.change_24h

    def fields(self) -> dict[str, float]:
        """The template fields: price and change_24h, and price_<code> for each currency."""
        fields = {"price": self.price, "change_24h": self.change_24h}
        fields.update({f"price_{code}": price for code, price, _ in self.currencies})
        return fields


SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥"}
SOURCE_NAMES = {"coingecko": "CoinGecko", "coinbase": "Coinbase", "kraken": "Kraken"}


def money(amount: float, currency: str, cents: bool | None = None) -> str:
    """$67,890.12 / €92,000 / 1,234.50 CHF: cents below 1,000 (or if asked)."""
    digits = 2 if (cents if cents is not None else amount < 1000) else 0
    symbol = SYMBOLS.get(currency)
    return f"{symbol}{amount:,.{digits}f}" if symbol else f"{amount:,.{digits}f} " \
        f"{currency.upper()}"


def make_quote(source: str, prices: dict[str, tuple[float, float]], fetched_at: datetime
               ) -> Quote:
    """A quote from a source's {code: (price, change)}, in the configured order."""
    rows = tuple((code, price, change) for code, (price, change) in prices.items())
    _, price, change = rows[0]
    return Quote(price, change, fetched_at, source, rows)


def number(value: Any, where: str, positive: bool = False) -> float:
    """A finite number (a JSON number, or a decimal string as exchanges send them);
    PriceError naming `where` otherwise."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise PriceError(f"expected a number at {where}, got {clip(value)}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PriceError(f"expected a number at {where}, got {clip(value)}")
    try:
        result = float(value)
    except OverflowError:       # a JSON integer too big for a float, e.g. 10**400
        result = math.inf
    if not math.isfinite(result):
        raise PriceError(f"expected a finite number at {where}, got {clip(value)}")
    if positive and result <= 0:
        raise PriceError(f"expected a positive price, got {where} = {result!r}")
    return result


def clip(value: Any, limit: int = 80) -> str:
    """A value quoted in an error, cut to `limit` (buzzbotd.runtime.text)."""
    return shorten(value if isinstance(value, str) else repr(value), limit)
