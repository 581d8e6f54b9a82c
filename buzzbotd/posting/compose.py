"""A slot's tweet text from a price quote: the template rendered, and refused
(never truncated) when X would not take it."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from buzzbotd import timeofday
from buzzbotd.template import (
    TWEET_MAX_CHARS,
    grapheme_count,
    render_template,
    weighted_length,
)

if TYPE_CHECKING:     # price imports httpx: the caller has it loaded already
    from buzzbotd.config import Settings
    from buzzbotd.price import PriceClient, Quote


class ComposeError(Exception):
    pass


# How long a post may be on each network other than X, as it counts: Bluesky's
# graphemes, a stock Mastodon's characters, a Telegram message's characters.
LIMITS = {"bluesky": (300, "graphemes"), "mastodon": (500, "characters"),
          "channel": (4096, "characters")}


def compose(template: str, quote: Quote, when_label: str, network: str = "x") -> str:
    """The post's text for `network`; too long is an error, never a truncated post."""
    fields = quote.fields()
    text = render_template(template, fields.pop("price"), fields.pop("change_24h"), when_label,
                           **fields)
    if network in LIMITS:
        most, unit = LIMITS[network]
        length = grapheme_count(text) if network == "bluesky" else len(text)
        if length > most:
            raise ComposeError(f"the {network} post would be {length} {unit}; it takes at "
                               f"most {most} ({network}.template or posts.template)")
        return text
    if (length := weighted_length(text)) > TWEET_MAX_CHARS:
        raise ComposeError(f"the tweet would be {length} characters as X counts them "
                           f"(a URL 23, CJK and emoji 2); X allows {TWEET_MAX_CHARS} "
                           "(x.template)")
    return text


def compose_now(settings: Settings, prices: PriceClient, now: datetime) -> str:
    """What `buzzbotd tweet --dry-run` prints."""
    return compose(settings.x.template, prices.fetch(),
                   timeofday.local_label(now.replace(microsecond=0), settings.x.zone))
