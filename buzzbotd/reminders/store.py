"""The reminders of each user: set, list, remove, and when each is next due.

A reminder is a local time of day ("08:30") in a zone (an IANA name or a
fixed offset "+05:30", never NULL) for one chat. It keeps `next_due_at`, the
UTC instant it is next sent (indexed with `enabled`), `last_sent_at`, the
UTC instant of its last send, and `last_sent_local_date`, the local day that
send belonged to. The invariant, kept by `next_due()`: next_due_at is the
first occurrence of the local time (DST-correct, via timeofday) after the
last send, of a local day later than last_sent_local_date, so a reminder is
sent at most once per local day.

The day an occurrence belongs to is the day whose time it is, not the date
its instant reads: 23:30 on a spring-forward Saturday in America/Nuuk falls
in the gap and happens at Sunday 00:00; it is Saturday's, and Sunday's 23:30
still comes. A new zone carries over the instant of the last send (its local
date in the new zone), never a date of the old zone.

The functions taking `now` run inside the database owner.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

from buzzbotd import timeofday
from buzzbotd.db.models import Reminder, TelegramUser, utc_text
from buzzbotd.reminders.request import EVERY_DAY
from buzzbotd.timeinput import ZoneUnavailable, zone

log = logging.getLogger("buzzbotd.reminders")

MAX_PER_USER = 5


def next_due(local_time: time, zone_: tzinfo, after: datetime, last_sent: date | None,
             days: int = EVERY_DAY) -> datetime:
    """The first instant after `after` at which `local_time` happens for a local day
    later than `last_sent`, on one of `days` (weekday bits, in the zone's own days:
    a Monday in Auckland is not a Monday in UTC)."""
    day = after.astimezone(zone_).date() - timedelta(days=1)
    if last_sent is not None:
        day = max(day, last_sent + timedelta(days=1))
    while True:
        if days >> day.weekday() & 1 or not days & EVERY_DAY:
            when = timeofday.instant(day, local_time, zone_)
            if when > after:
                return when
        day += timedelta(days=1)


def after_send(local_time: time, zone_: tzinfo, due_at: datetime, after: datetime,
               days: int = EVERY_DAY) -> tuple[date, datetime]:
    """The occurrence due at `due_at` was sent: the local day it was for, and the next
    occurrence after `after` (for a later day)."""
    day = occurrence_day(due_at, local_time, zone_)
    return day, next_due(local_time, zone_, max(after, due_at), day, days)


def occurrence_day(when: datetime, local_time: time, zone_: tzinfo) -> date:
    """The local day whose `local_time` happens at `when`: its date, or the day before
    when that day's time fell in a gap that ended at `when`. An instant that is no
    occurrence in `zone_` (the zone changed meanwhile) belongs to the date it reads."""
    local_date = when.astimezone(zone_).date()
    for day in (local_date, local_date - timedelta(days=1)):
        if timeofday.instant(day, local_time, zone_) == when:
            return day
    return local_date


@dataclass(frozen=True)
class ReminderView:
    local_time: str
    timezone: str
    next_due_at: datetime
    enabled: bool
    days: int = EVERY_DAY


@dataclass(frozen=True)
class SetResult:
    outcome: str                # created | updated | unchanged | full
    reminder: ReminderView | None


def touch_user(user_id: int, chat_id: int, now: datetime, default_timezone: str) -> int:
    """Records a user who wrote to the bot; re-enables the reminders of this chat that
    were disabled because Telegram refused to deliver to it (they wrote, so it works
    again). Returns how many were re-enabled."""
    user = TelegramUser.get_or_none(TelegramUser.id == user_id)
    if user is None:
        TelegramUser.create(id=user_id, chat_id=chat_id, timezone=default_timezone,
                            created_at=now, updated_at=now)
        return 0
    user.chat_id, user.updated_at = chat_id, now
    if chat_id == user_id:          # their private chat: they have not blocked the bot
        user.blocked = False
    user.save()
    disabled = list(Reminder.select().where((Reminder.user == user_id)
                                            & (Reminder.chat_id == chat_id)
                                            & (Reminder.enabled == False)))  # noqa: E712
    enabled = 0
    for reminder in disabled:
        try:
            reminder.next_due_at = next_due_for(reminder, now)
        except ZoneUnavailable:
            continue                # paused for its zone: set again with a current name
        reminder.enabled = True
        reminder.save()
        enabled += 1
    if enabled:
        log.info("user %d wrote again: %d reminder(s) re-enabled", user_id, enabled)
    return enabled


def set_reminder(user_id: int, chat_id: int, at: time, timezone_name: str | None,
                 now: datetime, default_timezone: str, days: int = EVERY_DAY) -> SetResult:
    """One reminder per user and local time: setting the same time again changes its
    zone, days or chat instead of adding a duplicate."""
    touch_user(user_id, chat_id, now, default_timezone)
    user = TelegramUser.get_by_id(user_id)
    if timezone_name is None:
        timezone_name = user.timezone
    elif user.timezone != timezone_name:
        user.timezone = timezone_name
        user.save()
    local_time = at.strftime("%H:%M")
    reminder = Reminder.get_or_none((Reminder.user == user_id)
                                    & (Reminder.local_time == local_time))
    if reminder is not None:
        if (reminder.timezone, reminder.chat_id, reminder.enabled,
                reminder.days or EVERY_DAY) == (
                timezone_name, chat_id, True, days):
            return SetResult("unchanged", _view(reminder))
        if reminder.timezone != timezone_name:
            reminder.last_sent_local_date = last_sent_in(reminder, zone(timezone_name))
        reminder.timezone, reminder.chat_id, reminder.enabled = timezone_name, chat_id, True
        reminder.days = days
        reminder.next_due_at = next_due_for(reminder, now)
        reminder.save()
        log.info("user %d changed the reminder at %s to %s", user_id, local_time, timezone_name)
        return SetResult("updated", _view(reminder))
    if Reminder.select().where(Reminder.user == user_id).count() >= MAX_PER_USER:
        return SetResult("full", None)
    reminder = Reminder(user=user_id, chat_id=chat_id, local_time=local_time,
                        timezone=timezone_name, enabled=True, created_at=now, days=days)
    reminder.next_due_at = next_due_for(reminder, now)
    reminder.save()
    log.info("user %d set a reminder at %s %s, first due %s", user_id, local_time,
             timezone_name, utc_text(reminder.next_due_at))
    return SetResult("created", _view(reminder))


def user_reminders(user_id: int) -> list[ReminderView]:
    query = Reminder.select().where(Reminder.user == user_id).order_by(Reminder.next_due_at)
    return [_view(r) for r in query]


def remove_reminders(user_id: int, at: time | None = None) -> int:
    """Removes the user's reminders (only the one at `at`, if given); returns how many."""
    condition = Reminder.user == user_id
    if at is not None:
        condition &= Reminder.local_time == at.strftime("%H:%M")
    removed = Reminder.delete().where(condition).execute()
    if removed:
        log.info("user %d removed %d reminder(s)", user_id, removed)
    return removed


def _view(reminder: Reminder) -> ReminderView:
    return ReminderView(reminder.local_time, reminder.timezone, reminder.next_due_at,
                        bool(reminder.enabled), reminder.days or EVERY_DAY)


def last_sent_in(reminder: Reminder, new_zone: tzinfo) -> str | None:
    """The local date, in `new_zone`, of the reminder's last send. The stored date is a
    day in the old zone: compared with days in the new one it would skip a day (moving
    west) or repeat one (moving east), so the instant of the send is carried over."""
    if reminder.last_sent_at is not None:
        return reminder.last_sent_at.astimezone(new_zone).date().isoformat()
    last = reminder.last_sent_local_date
    if not last:
        return None
    # Sent before last_sent_at was recorded (older schema): its instant, as well as the
    # old zone tells it.
    try:
        old_zone = zone(reminder.timezone)
    except ZoneUnavailable:
        return last                 # paused for that zone: its date is the best there is
    sent_at = timeofday.instant(date.fromisoformat(last), time.fromisoformat(
        reminder.local_time), old_zone)
    return sent_at.astimezone(new_zone).date().isoformat()


def next_due_for(reminder: Reminder, after: datetime) -> datetime:
    last = reminder.last_sent_local_date
    return next_due(time.fromisoformat(reminder.local_time), zone(reminder.timezone), after,
                    date.fromisoformat(last) if last else None, reminder.days or EVERY_DAY)
