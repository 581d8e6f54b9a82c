"""Daily local times of day → UTC instants, correct across DST changes.

Used by X slots and by reminders alike. The rules:
- a local time that does not exist that day (spring forward: 02:30 in
  Europe/Berlin on the last Sunday of March) happens at the first valid
  moment after it, the end of the gap (03:00 local);
- a local time that happens twice (fall back) happens once, at its first
  occurrence.
`zone` is any tzinfo: a ZoneInfo or a fixed offset (datetime.timezone).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta, tzinfo


def instant(day: date, at: time, zone: tzinfo) -> datetime:
    """The UTC instant at which local `at` happens on local `day`."""
    naive = datetime.combine(day, at)
    first = naive.replace(tzinfo=zone, fold=0)
    as_utc = first.astimezone(UTC)
    if as_utc.astimezone(zone).replace(tzinfo=None) == naive:
        return as_utc                     # exists (fold=0 is the first of two, if ambiguous)
    return _gap_end(naive, zone)


def _gap_end(naive: datetime, zone: tzinfo) -> datetime:
    """For a wall time inside a DST gap: the instant the gap ends."""
    # fold=1 reads the time with the offset after the change (earlier instant),
    # fold=0 with the offset before it (later instant); the change lies between.
    low = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    low, high = min(low, high), max(low, high)
    before = low.astimezone(zone).utcoffset()
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).utcoffset() == before:
            low = middle
        else:
            high = middle
    return high.replace(microsecond=0)


def occurrences(times: Iterable[time], zone: tzinfo, start: datetime, end: datetime
                ) -> Iterator[datetime]:
    """Every instant in (start, end] at which one of `times` happens, in order."""
    times = sorted(times)
    day = start.astimezone(zone).date() - timedelta(days=1)
    last_day = end.astimezone(zone).date() + timedelta(days=1)
    seen = set()
    while day <= last_day:
        for at in times:
            when = instant(day, at, zone)
            if start < when <= end and when not in seen:
                seen.add(when)
                yield when
        day += timedelta(days=1)


def next_occurrence(times: Iterable[time], zone: tzinfo, after: datetime) -> datetime:
    """The first instant strictly after `after` at which one of `times` happens."""
    times = list(times)
    horizon = after + timedelta(days=3)   # a day always has each time (or its gap end)
    return next(occurrences(times, zone, after, horizon))


def slot_key(when: datetime) -> str:
    """The stable key of a slot: its UTC instant, e.g. 2026-11-22T08:00:00Z."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def local_label(when: datetime, zone: tzinfo) -> str:
    """'16:00 UTC', '08:30 CET': how a person reads a slot."""
    local = when.astimezone(zone)
    fmt = "%H:%M:%S" if local.second else "%H:%M"
    return f"{local.strftime(fmt)} {local.tzname()}"
