"""What a user asks for with /remind: its words → a time of day, the days of the
week and a zone (`/remind 08:30 mon-fri Europe/Berlin`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time

from buzzbotd.timeinput import InputError, parse_time, parse_zone

MAX_ARGUMENT_CHARS = 80        # a time, the days and the longest zone name fit
EXAMPLE = "/remind 08:30 Europe/Berlin"
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
EVERY_DAY = 0b1111111          # bit d: weekday d (Monday 0), local to the reminder's zone
DAYS_FORM = "daily, mon-fri, sat,sun, or any list or range of mon … sun"
_DAY_WORD = re.compile(r"^[a-z]+(?:-[a-z]+)?(?:,[a-z]+(?:-[a-z]+)?)*$")


@dataclass(frozen=True)
class ReminderRequest:
    at: time
    timezone: str | None       # canonical IANA name or "+05:30"; None: the user's last
    days: int = EVERY_DAY      # weekdays as bits (days_text says them)


def parse_request(args: list[str]) -> ReminderRequest:
    """`/remind` arguments → a request, or InputError saying what is wrong."""
    if not args:
        raise InputError(f"Tell me the time of day: /remind HH:MM [days] [timezone], e.g. "
                         f"{EXAMPLE}, /remind 08:30 mon-fri or just /remind 08:30")
    if len(" ".join(args)) > MAX_ARGUMENT_CHARS:
        raise InputError(f"That is too long for a time, days and a timezone. Example: "
                         f"{EXAMPLE}")
    if len(args) > 3:
        raise InputError(f"I expected a time, the days and a timezone, got {len(args)} words. "
                         f"Example: /remind 08:30 mon-fri Europe/Berlin")
    problems, at, zone_name, days = [], None, None, EVERY_DAY
    try:
        at = parse_time(args[0])
    except InputError as e:
        problems.append(str(e))
    rest = args[1:]
    if rest and _is_days(rest[0], also_zone=len(rest) == 1):
        try:
            days = parse_days(rest.pop(0))
        except InputError as e:
            problems.append(str(e))
    if len(rest) > 1:
        problems.append(f"I expected a time, the days and at most one timezone, got "
                        f"{len(args)} words (the days come before the timezone). Example: "
                        "/remind 08:30 mon-fri Europe/Berlin")
    elif rest:
        try:
            zone_name = parse_zone(rest[0])
        except InputError as e:
            if _DAY_WORD.match(rest[0].lower()):      # a word: days misspelt, or a zone
                problems.append(f'"{rest[0]}" is neither days ({DAYS_FORM}) nor a timezone I '
                                "know (a name like Europe/Berlin, or an offset like +05:30). "
                                "Example: /remind 08:30 mon-fri Europe/Berlin")
            else:
                problems.append(str(e))
    if problems or at is None:      # several wrong: say each, so one retry fixes them
        raise InputError("\n".join(problems))
    return ReminderRequest(at, zone_name, days)


def _is_days(word: str, also_zone: bool) -> bool:
    """Whether `word` means days (else it is a zone): day names, "daily", or, when
    it could also be a zone (the last word), only a word no zone is spelled like."""
    word = word.lower()
    if word in ("daily", "weekdays", "weekends") or word[:3] in DAY_NAMES:
        return True
    return bool(_DAY_WORD.match(word)) and not also_zone and "/" not in word


def parse_days(word: str) -> int:
    """'mon-fri' → the weekday bits; 'daily', 'sat,sun', 'mon,wed-fri'; else InputError
    naming the form."""
    word = word.lower()
    aliases = {"daily": "mon-sun", "weekdays": "mon-fri", "weekends": "sat,sun"}
    word = aliases.get(word, word)
    bits = 0
    for part in word.split(","):
        first, dash, last = part.partition("-")
        try:
            start = DAY_NAMES.index(first[:3]) if len(first) >= 3 else -1
            end = DAY_NAMES.index(last[:3]) if dash and len(last) >= 3 else start
        except ValueError:
            start = end = -1
        if start < 0 or end < 0 or (first[3:] and not "day".startswith(first[3:]) and
                                    first not in _FULL_NAMES):
            raise InputError(f'"{part}" is not a day of the week; expected {DAYS_FORM}. '
                             "Example: /remind 08:30 mon-fri")
        day = start
        while True:             # a range may wrap: fri-mon is fri, sat, sun, mon
            bits |= 1 << day
            if day == end:
                break
            day = (day + 1) % 7
    return bits


_FULL_NAMES = {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
               "tues", "thur", "thurs", "wednes"}


def days_text(days: int) -> str:
    """The weekday bits as a person writes them: 'daily', 'mon-fri', 'sat,sun'."""
    if days == EVERY_DAY:
        return "daily"
    names = [DAY_NAMES[d] for d in range(7) if days >> d & 1]
    runs: list[list[int]] = []
    for d in range(7):
        if days >> d & 1:
            if runs and runs[-1][-1] == d - 1:
                runs[-1].append(d)
            else:
                runs.append([d])
    parts = [DAY_NAMES[r[0]] if len(r) == 1 else
             f"{DAY_NAMES[r[0]]}-{DAY_NAMES[r[-1]]}" if len(r) > 2 else
             f"{DAY_NAMES[r[0]]},{DAY_NAMES[r[1]]}" for r in runs]
    return ",".join(parts) if parts else ",".join(names)
