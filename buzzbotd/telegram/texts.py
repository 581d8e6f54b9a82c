"""How the bot words a price: in a /price reply and in a reminder."""

from __future__ import annotations

from datetime import datetime

from buzzbotd.price import Quote


def price_text(quote: Quote) -> str:
    return f"Bitcoin is at ${quote.price:,.2f} ({quote.change_24h:+.2f}% in 24h)."


def stale_price_text(quote: Quote, now: datetime) -> str:
    """The last good price while the price API fails, saying how old it is."""
    return (f"Bitcoin was at ${quote.price:,.2f} ({quote.change_24h:+.2f}% in 24h) as of "
            f"{age_text((now - quote.fetched_at).total_seconds())}; I can't reach the price "
            "service right now.")


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
