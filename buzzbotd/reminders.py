"""Daily reminders: what a user asks for, when each is next due, and the dispatch round.

A reminder is a local time of day ("08:30") in a zone (an IANA name or a
fixed offset "+05:30", never NULL) for one chat. It keeps `next_due_at`, the
UTC instant it is next sent (indexed with `enabled`), and
`last_sent_local_date`. The invariant, kept by `next_due()`: next_due_at is
the first occurrence of the local time (DST-correct, via timeofday) after
the last send whose local date is later than last_sent_local_date, so a
reminder is sent at most once per local day.

The dispatch round runs every minute in a scheduler worker thread: one
indexed query (paged) finds what is due, the bot sends it, and each reminder
is advanced only once Telegram has confirmed its message. Delivery is
therefore at-least-once: if the process dies between Telegram accepting a
message and the database recording it (a window of one HTTP answer and one
small transaction), that reminder is sent again at the next start. We take
that risk rather than at-most-once (mark before sending) because Telegram
has no idempotency key and a bot cannot read back what it sent, so an
uncertain reminder can never be settled; a rare duplicate message is a
nuisance, a reminder that silently never arrives is the failure buzzbotd
exists to end. An orderly stop lets sends in flight finish and be recorded.
If the record itself fails (disk full, I/O error) while the process lives,
the bot remembers what Telegram accepted and later rounds retry only the
write: a failed write never means a second message (SPEC "The database").

The functions taking `now` run inside the database owner.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from time import monotonic

import peewee

from buzzbotd import faults, timeofday
from buzzbotd.db import DatabaseOwner
from buzzbotd.db.models import Reminder, TelegramUser, utc_text
from buzzbotd.metrics import METRICS
from buzzbotd.timeinput import InputError, parse_time, parse_zone, zone

log = logging.getLogger("buzzbotd.reminders")

MAX_PER_USER = 5
MAX_ARGUMENT_CHARS = 64        # a time and the longest zone name fit with room to spare
PAGE_SIZE = 500                # reminders per due query; bounds memory however many are due
EXAMPLE = "/remind 08:30 Europe/Berlin"


# -- input -------------------------------------------------------------------------


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


def next_due(local_time: time, zone_: tzinfo, after: datetime, last_sent: date | None
             ) -> datetime:
    """The first instant after `after` at which `local_time` happens on a local day
    later than `last_sent`."""
    when = timeofday.next_occurrence([local_time], zone_, after)
    while last_sent is not None and when.astimezone(zone_).date() <= last_sent:
        when = timeofday.next_occurrence([local_time], zone_, when)
    return when


# -- what users do (inside the database owner) ----------------------------------------


@dataclass(frozen=True)
class ReminderView:
    local_time: str
    timezone: str
    next_due_at: datetime
    enabled: bool


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
    for reminder in disabled:
        reminder.enabled = True
        reminder.next_due_at = _next_for(reminder, now)
        reminder.save()
    if disabled:
        log.info("user %d wrote again: %d reminder(s) re-enabled", user_id, len(disabled))
    return len(disabled)


def set_reminder(user_id: int, chat_id: int, at: time, timezone_name: str | None,
                 now: datetime, default_timezone: str) -> SetResult:
    """One reminder per user and local time: setting the same time again changes its
    zone or chat instead of adding a duplicate."""
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
        if (reminder.timezone, reminder.chat_id, reminder.enabled) == (timezone_name, chat_id,
                                                                       True):
            return SetResult("unchanged", _view(reminder))
        if reminder.timezone != timezone_name:
            reminder.last_sent_local_date = _last_sent_in(reminder, zone(timezone_name))
        reminder.timezone, reminder.chat_id, reminder.enabled = timezone_name, chat_id, True
        reminder.next_due_at = _next_for(reminder, now)
        reminder.save()
        log.info("user %d changed the reminder at %s to %s", user_id, local_time, timezone_name)
        return SetResult("updated", _view(reminder))
    if Reminder.select().where(Reminder.user == user_id).count() >= MAX_PER_USER:
        return SetResult("full", None)
    reminder = Reminder(user=user_id, chat_id=chat_id, local_time=local_time,
                        timezone=timezone_name, enabled=True, created_at=now)
    reminder.next_due_at = _next_for(reminder, now)
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
                        bool(reminder.enabled))


def _last_sent_in(reminder: Reminder, new_zone: tzinfo) -> str | None:
    """The local date, in `new_zone`, of the reminder's last send. The stored date is a
    day in the old zone: compared with days in the new one it would skip a day (moving
    west) or repeat one (moving east), so the instant it names is carried over."""
    last = reminder.last_sent_local_date
    if not last:
        return None
    sent_at = timeofday.instant(date.fromisoformat(last), time.fromisoformat(
        reminder.local_time), zone(reminder.timezone))
    return sent_at.astimezone(new_zone).date().isoformat()


def _next_for(reminder: Reminder, after: datetime) -> datetime:
    last = reminder.last_sent_local_date
    return next_due(time.fromisoformat(reminder.local_time), zone(reminder.timezone), after,
                    date.fromisoformat(last) if last else None)


# -- dispatch (inside the database owner) ----------------------------------------------


@dataclass(frozen=True)
class Due:
    """A reminder to send now."""

    id: int
    user_id: int
    chat_id: int
    due_at: datetime


@dataclass(frozen=True)
class DuePage:
    due: list[Due]
    skipped: int                          # beyond grace: advanced without sending
    cursor: tuple[datetime, int] | None   # where the next page starts; None: last page


def due_page(now: datetime, grace_s: int, cursor: tuple[datetime, int] | None = None,
             limit: int = PAGE_SIZE) -> DuePage:
    """One page of the due query, in (next_due_at, id) order after `cursor`. Reminders
    due longer ago than `grace_s` (missed while the daemon was down) are skipped to
    their next day here, and logged."""
    rows = list(due_query(now, cursor, limit))
    # Read before the loop: skipping a row moves its next_due_at to another day, and
    # a cursor taken from it would jump over every row still due this minute.
    last = (rows[-1].next_due_at, rows[-1].id) if len(rows) == limit else None
    oldest = now - timedelta(seconds=grace_s)
    due, skipped = [], 0
    for row in rows:
        if row.next_due_at >= oldest:
            due.append(Due(row.id, row.user_id, row.chat_id, row.next_due_at))
            continue
        skipped += 1
        missed = round((now - row.next_due_at).total_seconds())
        _advance(row, now, sent=False)
        log.info("reminder %d for user %d due %s was missed by %ds (more than "
                 "telegram.reminder_grace_s = %ds): skipped, next %s", row.id, row.user_id,
                 utc_text(row.next_due_at), missed, grace_s, utc_text(row.next_due_at))
    return DuePage(due, skipped, last)


def due_query(now: datetime, cursor: tuple[datetime, int] | None = None,
              limit: int = PAGE_SIZE) -> peewee.ModelSelect:
    """Enabled reminders due by `now`, after `cursor`, oldest first: a range scan of
    the reminder_due (enabled, next_due_at) index, however many reminders exist."""
    condition = (Reminder.enabled == True) & (Reminder.next_due_at <= now)  # noqa: E712
    if cursor is not None:
        condition &= (peewee.Tuple(Reminder.next_due_at, Reminder.id)
                      > peewee.Tuple(utc_text(cursor[0]), cursor[1]))
    return (Reminder
            .select(Reminder.id, Reminder.user, Reminder.chat_id, Reminder.local_time,
                    Reminder.timezone, Reminder.next_due_at, Reminder.last_sent_local_date)
            .where(condition)
            .order_by(Reminder.next_due_at, Reminder.id)
            .limit(limit))


def mark_sent(reminder_id: int, due_at: datetime, now: datetime) -> None:
    """Telegram confirmed the message for the occurrence due at `due_at`."""
    faults.maybe_fail("mark_sent")
    _settle(reminder_id, due_at, now, sent=True)


def skip_occurrence(reminder_id: int, due_at: datetime, now: datetime) -> None:
    """Telegram refused this message for good (400): try again at the next occurrence."""
    _settle(reminder_id, due_at, now, sent=False)


def _settle(reminder_id: int, due_at: datetime, now: datetime, sent: bool) -> None:
    reminder = Reminder.get_or_none(Reminder.id == reminder_id)
    # Removed or changed (/unremind, /remind with a new zone) while it was being sent.
    if reminder is not None and reminder.next_due_at == due_at:
        _advance(reminder, max(now, due_at), sent)


def _advance(reminder: Reminder, after: datetime, sent: bool) -> None:
    if sent:
        reminder.last_sent_local_date = reminder.next_due_at.astimezone(
            zone(reminder.timezone)).date().isoformat()
    reminder.next_due_at = _next_for(reminder, after)
    Reminder.update(next_due_at=reminder.next_due_at,
                    last_sent_local_date=reminder.last_sent_local_date
                    ).where(Reminder.id == reminder.id).execute()


def disable_chat(chat_id: int, now: datetime) -> int:
    """Telegram refused the chat for good (403: the user blocked the bot, or it left the
    group): its reminders stop until someone writes from it again."""
    if chat_id > 0:
        TelegramUser.update(blocked=True, updated_at=now).where(
            TelegramUser.id == chat_id).execute()
    return Reminder.update(enabled=False).where(Reminder.chat_id == chat_id).execute()


def move_chat(old_chat_id: int, new_chat_id: int, now: datetime) -> int:
    """A group became a supergroup (Telegram's 400 with migrate_to_chat_id): its
    reminders, and its users' last chat, move to the new chat id. Returns how many
    reminders moved."""
    TelegramUser.update(chat_id=new_chat_id, updated_at=now).where(
        TelegramUser.chat_id == old_chat_id).execute()
    return Reminder.update(chat_id=new_chat_id).where(
        Reminder.chat_id == old_chat_id).execute()


# -- the round (in a scheduler worker thread) --------------------------------------------


@dataclass
class Tally:
    sent: int = 0
    failed: int = 0         # transient (network, 429 after retries): still due, retried
    blocked: int = 0        # 403: the chat's reminders disabled
    rejected: int = 0       # 400: skipped until the next occurrence
    skipped: int = 0        # missed by more than the grace period
    unrecorded: int = 0     # delivered, but the database write failed: only it is retried

    def add(self, other: Tally) -> None:
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def __bool__(self) -> bool:
        return any(vars(self).values())


def dispatch(owner: DatabaseOwner, compose: Callable[[], str],
             send: Callable[[list[Due], str], Tally], clock: Callable[[], datetime],
             grace_s: int, should_stop: Callable[[], bool] = lambda: False) -> Tally:
    """Sends every reminder due now: pages of the due query, each page's messages
    composed once (one price for all) and handed to `send`, which delivers them and
    records each outcome. Returns what happened."""
    now = clock()
    started = monotonic()
    tally = Tally()
    cursor = None
    while not should_stop():
        page = owner.call(due_page, now, grace_s, cursor)
        tally.skipped += page.skipped
        if page.due:
            tally.add(send(page.due, compose()))
        if page.cursor is None:
            break
        cursor = page.cursor
    METRICS.reminders(vars(tally))
    if tally:
        seconds = monotonic() - started
        log.info("reminders due by %s: %d sent, %d failed (retried next minute), %d blocked, "
                 "%d rejected, %d skipped, %d not recorded; %.1fs, %.1f msg/s",
                 utc_text(now), tally.sent, tally.failed, tally.blocked, tally.rejected,
                 tally.skipped, tally.unrecorded, seconds,
                 tally.sent / seconds if seconds else 0.0)
    else:
        log.debug("reminders due by %s: none", utc_text(now))
    return tally
