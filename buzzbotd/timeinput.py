"""Times of day and time zones as people write them, read by one parser for both
readers: the config file (x.times, x.timezone, telegram.default_timezone) and
/remind. The two accept different forms, on purpose and as they always have:

- a time of day: the config file takes "HH:MM" or "HH:MM:SS" with two-digit
  hours; /remind takes "HH:MM" or "H:MM", no seconds, and answers "9pm" with
  its 24-hour form;
- a zone: the config file takes any name the zoneinfo database loads, exactly
  as written; /remind takes the listed IANA names in any case, or a UTC offset
  (+05:30, -4, UTC+2), and stores the canonical form.
"""

from __future__ import annotations

import difflib
import functools
import re
from datetime import time, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

MAX_OFFSET = timedelta(hours=14)
MIN_OFFSET = timedelta(hours=-12)
_TIME_OF_DAY = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])(?::([0-5][0-9]))?$")
_AM_PM = re.compile(r"^(1[0-2]|0?[1-9])(?:[:.]([0-5][0-9]))?\s*([ap])\.?m\.?$", re.IGNORECASE)
_OFFSET = re.compile(r"^(?:UTC|GMT)?([+-])([0-9]{1,2})(?::?([0-9]{2}))?$", re.IGNORECASE)


class InputError(ValueError):
    """Input a user typed that cannot be used; the message tells them what to type."""


def time_of_day(text: str, *, one_digit_hour: bool, seconds: bool) -> time | None:
    """'HH:MM' (24-hour) → time, else None; 'H:MM' and 'HH:MM:SS' only if allowed."""
    match = _TIME_OF_DAY.match(text)
    if not match or (len(match[1]) == 1 and not one_digit_hour) or (match[3] and not seconds):
        return None
    return time(int(match[1]), int(match[2]), int(match[3] or 0))


def parse_time(text: str) -> time:
    """A time of day as a /remind user writes it: '08:30' or '8:30' (24-hour) → time."""
    at = time_of_day(text, one_digit_hour=True, seconds=False)
    if at is not None:
        return at
    am_pm = _AM_PM.match(text)
    if am_pm:
        hour = int(am_pm[1]) % 12 + (12 if am_pm[3].lower() == "p" else 0)
        raise InputError(f"Please write the time in 24-hour form: {text} is "
                         f"{hour:02d}:{int(am_pm[2] or 0):02d}. Example: /remind "
                         f"{hour:02d}:{int(am_pm[2] or 0):02d}")
    raise InputError(f'"{text}" is not a time of day. Use 24-hour HH:MM from 00:00 to 23:59, '
                     "e.g. /remind 21:00")


def zone_name(text: str, *, any_case: bool) -> str | None:
    """The IANA zone `text` names, as stored (canonical case with `any_case`), or None."""
    if any_case:
        return _zone_names().get(text.lower())
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return text


def closest_zone(text: str, *, any_case: bool, cutoff: float) -> str | None:
    """The zone name most like a misspelt one, for "did you mean", or None."""
    names = _zone_names() if any_case else available_timezones()
    close = difflib.get_close_matches(text.lower() if any_case else text, list(names), n=1,
                                      cutoff=cutoff)
    if not close:
        return None
    return _zone_names()[close[0]] if any_case else close[0]


def parse_zone(text: str) -> str:
    """An IANA name (any case) or a UTC offset (+05:30, -4, UTC+2) → its canonical form."""
    offset = _OFFSET.match(text)
    if offset:
        sign, hours, minutes = offset[1], int(offset[2]), int(offset[3] or 0)
        delta = timedelta(hours=hours, minutes=minutes) * (-1 if sign == "-" else 1)
        if minutes >= 60 or not MIN_OFFSET <= delta <= MAX_OFFSET:
            raise InputError(f'"{text}" is not a UTC offset that exists: offsets run from '
                             "-12:00 to +14:00, e.g. +05:30 or -4")
        return f"{sign}{hours:02d}:{minutes:02d}"
    name = zone_name(text, any_case=True)
    if name is None:
        close = closest_zone(text, any_case=True, cutoff=0.7)
        hint = f' Did you mean {close}?' if close else ""
        raise InputError(f'"{text}" is not a timezone I know.{hint} Use a name like '
                         "Europe/Berlin or Asia/Kolkata, or an offset like +05:30")
    return name


@functools.cache
def _zone_names() -> dict[str, str]:
    return {name.lower(): name for name in available_timezones()}


def zone(name: str) -> tzinfo:
    """A stored timezone ("Asia/Kolkata" or "+05:30") → tzinfo."""
    if name[0] in "+-":
        hours, minutes = name[1:].split(":")
        delta = timedelta(hours=int(hours), minutes=int(minutes))
        return timezone(-delta if name[0] == "-" else delta)
    return ZoneInfo(name)
