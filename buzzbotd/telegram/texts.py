"""How the bot words a price: in a /price reply, an inline answer and a reminder."""

from __future__ import annotations

from datetime import datetime

from buzzbotd.price import Quote
from buzzbotd.price.quote import SOURCE_NAMES, money


def price_text(quote: Quote, currency: str | None = None) -> str:
    price, change = quote.price_in(currency) if currency else (quote.price, quote.change_24h)
    return f"Bitcoin is at {money(price, currency or _default(quote), cents=True)} " \
           f"({change:+.2f}% in 24h)."


def price_reply(quote: Quote, currency: str | None = None) -> str:
    """/price and the inline answer: the price, and where it came from."""
    return f"{price_text(quote, currency)}\nSource: {source_name(quote.source)}."


def source_name(source: str) -> str:
    return SOURCE_NAMES.get(source, source)


def stale_price_text(quote: Quote, now: datetime, currency: str | None = None) -> str:
    """The last good price while the price API fails, saying how old it is."""
    price, change = quote.price_in(currency) if currency else (quote.price, quote.change_24h)
    return (f"Bitcoin was at {money(price, currency or _default(quote), cents=True)} "
            f"({change:+.2f}% in 24h) as of "
            f"{age_text((now - quote.fetched_at).total_seconds())}; I can't reach the price "
            "service right now.")


def _default(quote: Quote) -> str:
    return quote.currencies[0][0] if quote.currencies else "usd"


def age_text(seconds: float) -> str:
    """'12 min ago', '3 h 5 min ago', '2 days ago'."""
    minutes = max(int(seconds // 60), 0)
    if minutes < 1:
        return "less than a minute ago"
    if minutes < 60:
        return f"{minutes} min ago"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min ago" if minutes else f"{hours} h ago"
    return f"{hours // 24} days ago"
