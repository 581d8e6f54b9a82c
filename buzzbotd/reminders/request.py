"""What a user asks for with /remind: its words → a time of day and a zone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time

from buzzbotd.timeinput import InputError, parse_time, parse_zone

MAX_ARGUMENT_CHARS = 64        # a time and the longest zone name fit with room to spare
EXAMPLE = "/remind 08:30 Europe/Berlin"


@dataclass(frozen=True)
class ReminderRequest:
    at: time
    timezone: str | None       # canonical IANA name or "+05:30"; None: the user's last


def parse_request(args: list[str]) -> ReminderRequest:
    """`/remind` arguments → a request, or InputError saying what is wrong."""
    if not args:
        raise InputError(f"Tell me the time of day: /remind HH:MM [timezone], e.g. {EXAMPLE} "
                         "or just /remind 08:30")
    if len(" ".join(args)) > MAX_ARGUMENT_CHARS:
        raise InputError(f"That is too long for a time and a timezone. Example: {EXAMPLE}")
    if len(args) > 2:
        raise InputError(f"I expected a time and at most one timezone, got {len(args)} words. "
                         f"Example: {EXAMPLE}")
    problems, at, zone_name = [], None, None
    try:
        at = parse_time(args[0])
    except InputError as e:
        problems.append(str(e))
    if len(args) == 2:
        try:
            zone_name = parse_zone(args[1])
        except InputError as e:
            problems.append(str(e))
    if problems or at is None:      # both wrong: say both, so one retry fixes them
        raise InputError("\n".join(problems))
    return ReminderRequest(at, zone_name)
