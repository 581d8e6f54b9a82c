"""The due round: which reminders are due, sending them, and recording each outcome.

The round runs every minute in a scheduler worker thread: one indexed query
(paged) finds what is due, the bot sends it, and each reminder is advanced
only once Telegram has confirmed its message. Delivery is therefore
at-least-once: if the process dies between Telegram accepting a message and
the database recording it (a window of one HTTP answer and one small
transaction), that reminder is sent again at the next start. We take that
risk rather than at-most-once (mark before sending) because Telegram has no
idempotency key and a bot cannot read back what it sent, so an uncertain
reminder can never be settled; a rare duplicate message is a nuisance, a
reminder that silently never arrives is the failure buzzbotd exists to end.
An orderly stop lets sends in flight finish and be recorded. If the record
itself fails (disk full, I/O error) while the process lives, the bot
remembers what Telegram accepted and later rounds retry only the write: a
failed write never means a second message (SPEC "The database").

The functions taking `now` run inside the database owner.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from time import monotonic
from typing import TypeVar

import peewee

from buzzbotd import testhooks
from buzzbotd.clock import TRUST
from buzzbotd.db import DatabaseOwner
from buzzbotd.db.models import Reminder, TelegramUser, utc_text
from buzzbotd.ops.metrics import METRICS
from buzzbotd.reminders.request import EVERY_DAY
from buzzbotd.reminders.store import after_send, next_due_for, occurrence_day
from buzzbotd.timeinput import ZoneUnavailable, canonical_zone, zone

log = logging.getLogger("buzzbotd.reminders")
T = TypeVar("T")       # what `compose` makes of the price for a round (the bot: its texts)

PAGE_SIZE = 500                # reminders per due query; bounds memory however many are due


# -- dispatch (inside the database owner) ----------------------------------------------


@dataclass(frozen=True)
class Due:
    """A reminder to send now."""

    id: int
    user_id: int
    chat_id: int
    due_at: datetime
    # Sent instead of the reminder: why it stopped (its zone cannot be loaded).
    notice: str | None = None


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
    due, skipped, deferred = [], 0, 0
    for row in rows:
        try:
            zone(row.timezone)
        except ZoneUnavailable as e:
            # This row alone: paused (it leaves the due query), its user told why.
            _pause(row, e)
            due.append(Due(row.id, row.user_id, row.chat_id, row.next_due_at,
                           notice=_paused_notice(row)))
            continue
        if row.next_due_at >= oldest:
            due.append(Due(row.id, row.user_id, row.chat_id, row.next_due_at))
            continue
        if not TRUST.may_call_missed():
            deferred += 1       # the clock may be ahead: left due (clock.ClockTrust)
            continue
        skipped += 1
        missed = round((now - row.next_due_at).total_seconds())
        _advance(row, now)
        log.info("reminder %d for user %d due %s was missed by %ds (more than "
                 "telegram.reminder_grace_s = %ds): skipped, next %s", row.id, row.user_id,
                 utc_text(row.next_due_at), missed, grace_s, utc_text(row.next_due_at))
    if deferred:
        log.info("%d reminder(s) due before %s are late by more than "
                 "telegram.reminder_grace_s = %ds, but the clock may be ahead: left due, "
                 "not skipped", deferred, utc_text(oldest), grace_s)
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
                    Reminder.timezone, Reminder.next_due_at, Reminder.last_sent_local_date,
                    Reminder.last_sent_at, Reminder.days)
            .where(condition)
            .order_by(Reminder.next_due_at, Reminder.id)
            .limit(limit))


def mark_sent(reminder_id: int, due_at: datetime, now: datetime) -> None:
    """Telegram confirmed the message for the occurrence due at `due_at`."""
    testhooks.maybe_fail("mark_sent")
    _settle(reminder_id, due_at, now, sent=True)


def mark_each_sent(sent: list[tuple[int, datetime]], now: datetime
                   ) -> dict[tuple[int, datetime], Exception]:
    """mark_sent for each (id, due_at) of a batch, in one transaction, each in its own
    savepoint: a record that fails is undone alone and returned, the others stay."""
    failed: dict[tuple[int, datetime], Exception] = {}
    for reminder_id, due_at in sent:
        try:
            with Reminder._meta.database.atomic():
                mark_sent(reminder_id, due_at, now)
        except Exception as e:  # noqa: BLE001 - returned to the record's own waiter
            failed[(reminder_id, due_at)] = e
    return failed


def skip_occurrence(reminder_id: int, due_at: datetime, now: datetime) -> None:
    """Telegram refused this message for good (400): try again at the next occurrence."""
    _settle(reminder_id, due_at, now, sent=False)


def skip_or_pause(reminder_id: int, due_at: datetime, now: datetime, after_days: int) -> bool:
    """Telegram answered "chat not found" (400): skipped to the next occurrence, or
    paused (as a blocked chat's, until someone writes from that chat) once it has
    gone undelivered `after_days` days in a row. True if paused."""
    reminder = Reminder.get_or_none(Reminder.id == reminder_id)
    if reminder is None or reminder.next_due_at != due_at:
        return False
    local = zone(reminder.timezone)
    last = reminder.last_sent_local_date
    # Never sent: counted from the day before it was set.
    since = (date.fromisoformat(last) if last else
             reminder.created_at.astimezone(local).date() - timedelta(days=1))
    if (due_at.astimezone(local).date() - since).days < after_days:
        _advance(reminder, max(now, due_at))
        return False
    Reminder.update(enabled=False).where(Reminder.id == reminder_id).execute()
    return True


def _settle(reminder_id: int, due_at: datetime, now: datetime, sent: bool) -> None:
    reminder = Reminder.get_or_none(Reminder.id == reminder_id)
    if reminder is None or not reminder.enabled:
        return                      # removed (/unremind), or paused, meanwhile
    if reminder.next_due_at == due_at:
        _advance(reminder, max(now, due_at), sent_at=now if sent else None)
    elif sent:
        # Changed (/remind with a new zone) while it was being sent: the message still
        # arrived, and counts for the local day it arrived on in the new zone.
        local_time = time.fromisoformat(reminder.local_time)
        day = occurrence_day(due_at, local_time, zone(reminder.timezone))
        _record_send(reminder, now, day)
        reminder.next_due_at = next_due_for(reminder, max(now, due_at))
        _save_progress(reminder)


def _advance(reminder: Reminder, after: datetime, sent_at: datetime | None = None) -> None:
    """Moves the reminder past its occurrence at next_due_at; `sent_at`: it was sent."""
    if sent_at is None:
        reminder.next_due_at = next_due_for(reminder, after)
    else:
        day, reminder.next_due_at = after_send(time.fromisoformat(reminder.local_time),
                                               zone(reminder.timezone), reminder.next_due_at,
                                               after, reminder.days or EVERY_DAY)
        _record_send(reminder, sent_at, day)
    _save_progress(reminder)


def _record_send(reminder: Reminder, sent_at: datetime, day: date) -> None:
    if reminder.last_sent_local_date is None or day.isoformat() > reminder.last_sent_local_date:
        reminder.last_sent_local_date = day.isoformat()
    reminder.last_sent_at = sent_at


def _save_progress(reminder: Reminder) -> None:
    Reminder.update(next_due_at=reminder.next_due_at,
                    last_sent_local_date=reminder.last_sent_local_date,
                    last_sent_at=reminder.last_sent_at
                    ).where(Reminder.id == reminder.id).execute()


def _pause(reminder: Reminder, error: ZoneUnavailable) -> None:
    Reminder.update(enabled=False).where(Reminder.id == reminder.id).execute()
    log.error("reminder %d for user %d (%s %s) paused: %s; it is sent again once its user "
              "sets it with a zone this system has", reminder.id, reminder.user_id,
              reminder.local_time, reminder.timezone, error)


def _paused_notice(reminder: Reminder) -> str:
    current = canonical_zone(reminder.timezone)
    example = current if current != reminder.timezone else "Europe/Berlin"
    return (f"⏰ Your daily reminder at {reminder.local_time} ({reminder.timezone}) is paused: "
            "this server no longer knows that time zone. Set it again with a zone name it "
            f"knows, e.g. /remind {reminder.local_time} {example}")


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
    deferred: int = 0       # beyond its chat's share of a round: still due, next round

    def add(self, other: Tally) -> None:
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def __bool__(self) -> bool:
        return any(vars(self).values())


def dispatch(owner: DatabaseOwner, compose: Callable[[], T],
             send: Callable[[list[Due], T], Tally], clock: Callable[[], datetime],
             grace_s: int, should_stop: Callable[[], bool] = lambda: False,
             drain: Callable[[], Tally] = Tally) -> Tally:
    """Sends every reminder due now: pages of the due query, each page's messages
    composed once (one price for all) and handed to `send`, which delivers them and
    records each outcome (or starts to, and `drain` waits for the rest after the
    last page). Returns what happened."""
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
    tally.add(drain())
    METRICS.reminders(vars(tally))
    if tally:
        seconds = monotonic() - started
        log.info("reminders due by %s: %d sent, %d failed (retried next minute), %d blocked, "
                 "%d rejected, %d skipped, %d not recorded, %d deferred; %.1fs, %.1f msg/s",
                 utc_text(now), tally.sent, tally.failed, tally.blocked, tally.rejected,
                 tally.skipped, tally.unrecorded, tally.deferred, seconds,
                 tally.sent / seconds if seconds else 0.0)
    else:
        log.debug("reminders due by %s: none", utc_text(now))
    return tally
