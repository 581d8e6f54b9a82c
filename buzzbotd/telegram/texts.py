"""How the bot words things: its help, a price (in a /price reply, an inline
answer and a reminder), a reminder's days."""

from __future__ import annotations

from datetime import datetime

from buzzbotd.price import Quote
from buzzbotd.price.quote import SOURCE_NAMES, money
from buzzbotd.reminders.request import EVERY_DAY, days_text

HELP = """I tell you the Bitcoin price, and remind you of it every day.

/price – the price now
/remind 08:30 – a reminder every day at 08:30 (24-hour), in your last timezone
/remind 08:30 Asia/Kolkata – …in that timezone (a name, or an offset like +05:30 or -4)
/remind 08:30 mon-fri – …on those days only (sat,sun; mon,wed,fri; daily)
/reminders – your reminders
/unremind – remove them all (/unremind 08:30 removes one)
/alert above 100000 – one message when the price gets there (below 90000, move 5%)
/alerts – your price alerts (/unalert N removes one)
/currency eur – the currency of your prices"""
ADMIN_HELP = """

For admins:
/status – health, last and next tweets, counts
/post – post the price now to every network (/tweet too)
/pause, /resume – stop or restart scheduled tweets
/mute, /unmute – stop or restart the alerts I send you (also /alerts off, /alerts on)"""


def every(days: int) -> str:
    """'every day', 'every mon-fri', 'every sat,sun'."""
    return "every day" if days == EVERY_DAY else f"every {days_text(days)}"


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


REMINDER = "⏰ Your daily Bitcoin reminder: "
NO_PRICE = ("⏰ Your daily Bitcoin reminder. I can't get the price right now, sorry; "
            "try /price in a minute.")


def reminder_texts(quote: Quote, stale_since: datetime | None) -> dict[str, str]:
    """A reminder's words in each currency of `quote` (the last good one, with its
    age, when `stale_since` is now)."""
    codes = [code for code, _, _ in quote.currencies] or [_default(quote)]
    if stale_since is None:
        return {code: REMINDER + price_text(quote, code) for code in codes}
    return {code: REMINDER + stale_price_text(quote, stale_since, code) for code in codes}


class Texts:
    """A round's reminder texts by currency, and what each user's currency is (given
    a page at a time by the round, only where there is a choice)."""

    def __init__(self, by_currency: dict[str, str], default: str) -> None:
        self.by_currency, self.default = by_currency, default
        self.users: dict[int, str] = {}

    @property
    def choice(self) -> bool:
        """More than one currency: a user's currency matters."""
        return len(self.by_currency) > 1

    def of(self, user_id: int) -> str:
        if not self.by_currency:
            return NO_PRICE
        code = self.users.get(user_id, self.default)
        return self.by_currency.get(code) or self.by_currency.get(self.default) or \
            next(iter(self.by_currency.values()))
