"""Times of day and time zones as people write them, read by one parser for both
readers: the config file (x.times, x.timezone, telegram.default_timezone) and
/remind. The two accept different forms, on purpose and as they always have:

- a time of day: the config file takes "HH:MM" or "HH:MM:SS" with two-digit
  hours; /remind takes "HH:MM" or "H:MM", no seconds, and answers "9pm" with
  its 24-hour form;
- a zone: the config file takes any current name the zoneinfo database loads,
  exactly as written; /remind takes the IANA names in any case, or a UTC offset
  (+05:30, -4, UTC+2), and stores the canonical form.

Canonical means current: a legacy name (US/Eastern, GB, Japan, Zulu, EST5EDT)
is stored as the name it links to (America/New_York, …). Debian 13 moved the
legacy names to tzdata-legacy, not installed by default, and there they
cannot be loaded at all. The table of legacy names is the system's tzdata.zi
(its `L` lines) on top of the one shipped in buzzbotd/zonealiases.py; `zone()`
also loads a legacy name found stored by way of its current name. Etc/GMT+5
means UTC-05:00 (POSIX's sign): /remind stores it as the offset "-05:00".
"""

from __future__ import annotations

import difflib
import functools
import re
import zoneinfo
from datetime import time, timedelta, timezone, tzinfo
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from buzzbotd.zonealiases import ALIASES

MAX_OFFSET = timedelta(hours=14)
MIN_OFFSET = timedelta(hours=-12)
_TIME_OF_DAY = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])(?::([0-5][0-9]))?$")
_AM_PM = re.compile(r"^(1[0-2]|0?[1-9])(?:[:.]([0-5][0-9]))?\s*([ap])\.?m\.?$", re.IGNORECASE)
_OFFSET = re.compile(r"^(?:UTC|GMT)?([+-])([0-9]{1,2})(?::?([0-9]{2}))?$", re.IGNORECASE)
_ETC_GMT = re.compile(r"^Etc/GMT([+-])([0-9]{1,2})$", re.IGNORECASE)
# Files of the zoneinfo directory that are not zones a person lives in: the host's
# own setting, the "unset" placeholder, and zic's template for POSIX TZ strings.
REFUSED_ZONES = frozenset({"localtime", "Factory", "posixrules"})
# Still in zone.tab, never renamed: the config's default and the most typed name.
KEPT_NAMES = frozenset({"UTC"})


class InputError(ValueError):
    """Input a user typed that cannot be used; the message tells them what to type."""


class ZoneUnavailable(Exception):
    """A stored zone this system cannot load (its tzdata lacks the name)."""


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
    """The IANA zone `text` names, or None. With `any_case` (/remind): any case, legacy
    names too, answered with the canonical name. Without (the config file): the name
    as written, if this system loads it."""
    if any_case:
        return _zone_names().get(text.lower())
    if text in REFUSED_ZONES:
        return None
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None
    return text


def legacy_zone(name: str) -> str | None:
    """The current name of a legacy zone name (US/Eastern → America/New_York), or None."""
    return zone_aliases().get(name)


def canonical_zone(name: str) -> str:
    """A stored or typed zone name → the name to store (see the module's doc)."""
    name = zone_aliases().get(name, name)
    etc = _ETC_GMT.match(name)
    if etc and int(etc[2]) <= 14:
        # POSIX signs are inverted: Etc/GMT+5 is five hours behind UTC.
        return f"{'-' if etc[1] == '+' else '+'}{int(etc[2]):02d}:00"
    return name


@functools.cache
def zone_aliases() -> dict[str, str]:
    """Legacy name → current name: the shipped table, then the system's own links."""
    aliases = dict(ALIASES)
    aliases.update(_system_links())
    for alias, target in aliases.items():          # a link to a link: follow it
        for _ in range(5):
            target = aliases.get(target, target)
        aliases[alias] = target
    return aliases


def _system_links() -> dict[str, str]:
    """The `L` lines of the first tzdata.zi zoneinfo reads (its TZPATH, else the tzdata
    package), less the names zone.tab still lists (Europe/Vatican: a link, and a
    country's own name)."""
    directories = [Path(d) for d in zoneinfo.TZPATH]
    try:
        directories.append(Path(str(resources.files("tzdata") / "zoneinfo")))
    except (ModuleNotFoundError, TypeError):
        pass
    for directory in directories:
        try:
            text = (directory / "tzdata.zi").read_text(encoding="utf-8")
        except OSError:
            continue
        listed = set(KEPT_NAMES)
        for tab in ("zone.tab", "zone1970.tab"):
            try:
                rows = (directory / tab).read_text(encoding="utf-8").splitlines()
            except OSError:
                continue
            listed.update(row.split("\t")[2] for row in rows
                          if not row.startswith("#") and row.count("\t") >= 2)
        links = (line.split() for line in text.splitlines() if line.startswith("L "))
        return {alias: target for _, target, alias in links if alias not in listed}
    return {}


def closest_zone(text: str, *, any_case: bool, cutoff: float) -> str | None:
    """The zone name most like a misspelt one, for "did you mean", or None."""
    names = _zone_names() if any_case else available_timezones()
    close = difflib.get_close_matches(text.lower() if any_case else text, list(names), n=1,
                                      cutoff=cutoff)
    if not close:
        return None
    return _zone_names()[close[0]] if any_case else zone_aliases().get(close[0], close[0])


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
    """Lower-case name → canonical name, for every name a user may type."""
    names = (available_timezones() | set(zone_aliases())) - REFUSED_ZONES
    return {name.lower(): canonical_zone(name) for name in names}


def zone(name: str) -> tzinfo:
    """A stored timezone ("Asia/Kolkata" or "+05:30") → tzinfo; ZoneUnavailable if this
    system cannot load it (a legacy name is loaded by its current name)."""
    if name[0] in "+-":
        hours, minutes = name[1:].split(":")
        delta = timedelta(hours=int(hours), minutes=int(minutes))
        return timezone(-delta if name[0] == "-" else delta)
    current = canonical_zone(name)
    for candidate in dict.fromkeys((name, current)):
        if candidate in REFUSED_ZONES:
            continue
        if candidate[0] in "+-":
            return zone(candidate)
        try:
            return ZoneInfo(candidate)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            continue
    raise ZoneUnavailable(f"time zone {name!r} cannot be loaded: this system's tzdata "
                          "lacks it")
