"""Daily reminders, one module per concern:

- request.py: what a user asks for with /remind (its words → a time, the days
  of the week and a zone;
  the time and zone parsers themselves are buzzbotd/timeinput.py);
- store.py: each user's reminders (set, list, remove) and when each is next
  due, at most once per local day;
- due.py: the due round: the paged due query, the round that hands each page
  to the bot, and each outcome recorded (sent, refused, blocked, migrated).

What Telegram's answers mean for a reminder is decided in
buzzbotd/telegram/delivery.py; this package records it.
"""

from __future__ import annotations

from buzzbotd.reminders.due import (
    PAGE_SIZE,
    Due,
    DuePage,
    Tally,
    disable_chat,
    dispatch,
    due_page,
    due_query,
    mark_each_sent,
    mark_sent,
    move_chat,
    skip_occurrence,
    skip_or_pause,
)
from buzzbotd.reminders.request import (
    EVERY_DAY,
    EXAMPLE,
    MAX_ARGUMENT_CHARS,
    ReminderRequest,
    days_text,
    parse_request,
)
from buzzbotd.reminders.store import (
    MAX_PER_USER,
    ReminderView,
    SetResult,
    after_send,
    next_due,
    occurrence_day,
    remove_reminders,
    set_reminder,
    touch_user,
    user_reminders,
)
from buzzbotd.timeinput import InputError, parse_time, parse_zone, zone

__all__ = [
    "EVERY_DAY", "EXAMPLE", "MAX_ARGUMENT_CHARS", "MAX_PER_USER", "PAGE_SIZE", "after_send", "Due",
    "DuePage", "InputError", "ReminderRequest", "ReminderView", "SetResult", "Tally",
    "disable_chat", "days_text", "dispatch", "due_page", "due_query", "mark_each_sent",
    "mark_sent", "move_chat", "next_due", "occurrence_day", "parse_request", "parse_time",
    "parse_zone", "remove_reminders", "set_reminder", "skip_occurrence", "skip_or_pause",
    "touch_user", "user_reminders", "zone",
]
