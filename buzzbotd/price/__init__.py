"""The Bitcoin price: one shared client (client.py) asking CoinGecko and, when it
fails, Coinbase Exchange and Kraken (sources.py), answering a Quote (quote.py)."""

from buzzbotd.price.client import PriceClient
from buzzbotd.price.quote import PriceError, PriceUnavailable, Quote

__all__ = ["PriceClient", "PriceError", "PriceUnavailable", "Quote"]
