"""Counts of reminders and users, read from the tables the database's own
triggers keep (migration 5): O(timezones) per read instead of a scan of every
reminder, and as fresh as the rows, since a trigger runs in the transaction
that changed them. Read inside the database owner or on a read-only connection.
"""

from __future__ import annotations

from buzzbotd.db.raw import rows


def reminders_by_zone() -> list[tuple[bool, str, int]]:
    """(enabled, timezone, how many) for every pair that has reminders."""
    return [(bool(enabled), zone, n) for enabled, zone, n in
            rows("SELECT enabled, timezone, n FROM reminder_tally WHERE n > 0")]


def reminders() -> dict[bool, int]:
    """{True: enabled reminders, False: disabled ones}."""
    counts = {True: 0, False: 0}
    for enabled, _, n in reminders_by_zone():
        counts[enabled] += n
    return counts


def users() -> int:
    found = rows("SELECT n FROM user_tally WHERE id = 1")
    return found[0][0] if found else 0
