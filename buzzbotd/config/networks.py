"""The sections of the networks other than X ([bluesky], [mastodon]) and the
schedule they share with X ([posts], which [x] once spelt)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from datetime import time
from typing import Any
from zoneinfo import ZoneInfo

from buzzbotd.config.keys import Check, Invalid, Kind, Secret, key
from buzzbotd.config.kinds import (
    Choice,
    Flag,
    Seconds,
    SecretText,
    Template,
    Text,
    TimesOfDay,
    Url,
    Zone,
)
from buzzbotd.template import grapheme_count, template_problem, widest_text

# [posts] keys that [x] also takes, as their old spelling.
SCHEDULE_KEYS = ("times", "timezone", "grace_s", "template")
BLUESKY_MAX_GRAPHEMES = 300  # app.bsky.feed.post text: maxGraphemes
MASTODON_MAX_CHARS = 500     # a stock instance's limit
_NO_SECRET = Secret("", "default")
# A grace period is how late a slot or a reminder may still go out. Under a minute,
# one slow round (a price fetch, a restart) skips it for good: the scheduler runs
# each minute's job a moment after its instant, and a round can take seconds.
GRACE_FLOOR_S = 60
DEFAULT_TEMPLATE = "Bitcoin is at ${price:,.2f} ({change_24h:+.2f}% in 24h) #BTC"
DEFAULT_TIMES = (time(8), time(12), time(16), time(20))


class Channel(Kind):
    """A Telegram channel: "" (none), "@name", or its numeric id (e.g. -1001234567890)."""

    def convert(self, value: Any, key: str, check: Check) -> str:
        expected = ('expected "" (no channel), the channel\'s "@name" or its numeric id, '
                    'e.g. "@buzzbot_prices" or -1001234567890')
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise Invalid(expected, value)
        text = value.strip()
        if text == "" or re.fullmatch(r"@[A-Za-z][A-Za-z0-9_]{4,31}", text) \
                or re.fullmatch(r"-?[0-9]{1,20}", text):
            return text
        raise Invalid(expected, value)



class Zoned:
    """A section with a `timezone` key: its zone."""

    timezone: str

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class PostsSettings(Zoned):
    """The schedule and wording every network shares."""
    template: str = key(Template(), DEFAULT_TEMPLATE)
    times: tuple[time, ...] = key(TimesOfDay(), DEFAULT_TIMES)
    timezone: str = key(Zone(), "UTC")
    grace_s: int = key(Seconds(GRACE_FLOOR_S, 86400, whole=True), 600)


@dataclass(frozen=True)
class BlueskySettings:
    enabled: bool = key(Flag(), False)
    service: str = key(Url(api_base=True), "https://bsky.social")   # the PDS or the entryway
    handle: str = key(Text(strip=True), "")
    app_password: Secret = key(SecretText(), _NO_SECRET)
    template: str = key(Text(), "")         # "" = posts.template


@dataclass(frozen=True)
class MastodonSettings:
    enabled: bool = key(Flag(), False)
    instance: str = key(Url(api_base=True, empty=True), "")
    access_token: Secret = key(SecretText(), _NO_SECRET)
    visibility: str = key(Choice(("public", "unlisted", "private")), "public")
    template: str = key(Text(), "")         # "" = posts.template



def schedule(document: dict[str, Any], posts: Any, x: Any, check: Check
              ) -> tuple[Any, list[str]]:
    """[posts]' keys, or their old spelling in [x] (with a note); both is an error."""
    given_x = document.get("x") if isinstance(document.get("x"), dict) else {}
    given_posts = document.get("posts") if isinstance(document.get("posts"), dict) else {}
    old = [name for name in SCHEDULE_KEYS if name in given_x]
    for name in old:
        if name in given_posts:
            check.problem(f"x.{name}", f"and posts.{name} are both set; expected only "
                          f"posts.{name} (x.{name} is its old spelling)")
    moved = {name: getattr(x, name) for name in old if name not in given_posts}
    notes = [f"x.{name} is the old spelling of posts.{name}; it still works, "
             f"write posts.{name} instead" for name in moved]
    return dataclasses.replace(posts, **moved), notes


def network_template(network: str, template: str, check: Check) -> None:
    """A network's own template: valid, and short enough at the widest price."""
    name = f"{network}.template"
    if problem := template_problem(template, length_checked=False):
        check.problem(name, problem, template)
        return
    widest = widest_text(template)
    if network == "bluesky":
        count, most, unit = grapheme_count(widest), BLUESKY_MAX_GRAPHEMES, "graphemes"
    else:
        count, most, unit = len(widest), MASTODON_MAX_CHARS, "characters"
    if count > most:
        check.problem(name, f"can render to {count} {unit} (at the widest price); "
                      f"{network.capitalize()} takes at most {most}", template)
