"""The reminder send round: what happens to each due reminder Telegram is sent.

The scheduler's minute job (a worker thread) calls `dispatch_reminders`;
buzzbotd.reminders.dispatch picks the due reminders a page at a time and hands
each page to the round in the bot's loop. Each reminder ends in one of
(SPEC "Telegram's real behaviour"):

- sent: recorded as soon as the database can take it (mark_sent; the records
  that come in while one transaction is being written go together in the
  next); if that write fails, it is kept in `_delivered` and only the write
  is retried, never the message;
- retry next minute (failed): a network error SEND_ATTEMPTS times, a 429 that
  outlasted the rate limiter's retries, or a refused token (the round stops);
- blocked (403 Forbidden): the chat's reminders are disabled until the user
  writes to the bot again (reminders.disable_chat);
- migrated (400 ChatMigrated): the group became a supergroup; its reminders
  move to the new chat id (reminders.move_chat) and this one is sent there;
- given up for today (other 400 BadRequest): skipped until its next day;
  "chat not found" PAUSE_AFTER_DAYS days in a row: paused, as a blocked chat's.

Each chat with reminders due has its own sender, which waits for its chat's
turn holding nothing shared, then takes one of SEND_CONCURRENCY send slots.
The next page comes once fewer than PAGE_SIZE wait (a slow chat never holds up
later pages); a chat gets at most CHAT_ROUND_MAX a round, the rest "deferred".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime

from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
)

from buzzbotd import reminders, retry
from buzzbotd.price import PriceError, PriceUnavailable
from buzzbotd.pricealerts import store
from buzzbotd.telegram.app import BotApp
from buzzbotd.telegram.ratelimit import GROUP_MESSAGES, RETRY_AFTER_RETRIES, HeldTurn
from buzzbotd.telegram.texts import Texts, reminder_texts

log = logging.getLogger("buzzbotd.telegram")

SEND_ATTEMPTS = 3              # per reminder, on network errors, within a round
SEND_BACKOFF_S = 1.0
SEND_CONCURRENCY = 32          # reminders in flight; bounds how long a reply waits behind them
CHAT_ROUND_MAX = GROUP_MESSAGES   # a chat's reminders per round; the rest wait a round
CLOSE_GRACE_S = 2.0            # at stop: how long sends in flight get to finish
PAUSE_AFTER_DAYS = 3           # "chat not found" this many days in a row: paused


@dataclass(eq=False)         # hashable by identity: the rounds under way are a set
class _Round:
    """What one reminder round has learnt so far, and what it is doing."""

    # Not yet reported (take_tally): always counted into round_.tally as it is then.
    tally: reminders.Tally = field(default_factory=reminders.Tally)
    refused: set[int] = field(default_factory=set)        # chats that answered 403
    moved: dict[int, int] = field(default_factory=dict)   # group → its supergroup
    token_refused: bool = False                            # 401: the rest waits
    queues: dict[int, list[reminders.Due]] = field(default_factory=dict)   # chat → due
    taken: Counter[int] = field(default_factory=Counter)  # reminders per chat this round
    waiting: int = 0                                       # queued, not yet settled
    senders: set[asyncio.Task] = field(default_factory=set)
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    # Delivered, waiting for the next transaction (see ReminderDelivery._record), and
    # the task that writes them.
    unwritten: list[tuple[reminders.Due, asyncio.Future[None]]] = field(default_factory=list)
    writer: asyncio.Task | None = None
    recording: list[asyncio.Task] = field(default_factory=list)   # _record_sent of each sent

    def take_tally(self) -> reminders.Tally:
        tally, self.tally = self.tally, reminders.Tally()
        return tally


class ReminderDelivery:
    """The reminder round, sending through `app`'s bot."""

    def __init__(self, app: BotApp) -> None:
        self.app = app
        self.owner, self.clock = app.owner, app.clock
        self._closing = False
        self._rounds: set[_Round] = set()
        self._sending = asyncio.Semaphore(SEND_CONCURRENCY)
        self._waiting_turn: set[asyncio.Task] = set()   # senders waiting for a chat's turn
        # (reminder id, due_at) that Telegram accepted but the database has not recorded.
        self._delivered: set[tuple[int, datetime]] = set()
        self._default = app.settings.price.currencies[0]

    def dispatch_reminders(self) -> reminders.Tally:
        """Sends the reminders that are due (scheduler job, in a worker thread)."""
        if not self.app.connected:
            # Still due: sent once the bot is connected, if within reminder_grace_s,
            # else skipped by the first round then (reminders.due_page).
            log.debug("reminders wait: the bot is not connected to Telegram")
            return reminders.Tally()
        round_ = _Round()
        return reminders.dispatch(
            self.owner, self._reminder_texts,
            lambda page, text: self.app.run_in_loop(self._send_page(round_, page, text)),
            self.clock, self.app.settings.telegram.reminder_grace_s,
            should_stop=lambda: self._closing,
            drain=lambda: self.app.run_in_loop(self._finish(round_)))

    def stop_sending(self) -> None:
        """At shutdown, first: no new reminder is sent, so a dispatch round ends as
        soon as the sends in flight are answered and recorded: a sender waiting for
        its chat's turn (a group's window: up to a minute) stops waiting. From any
        thread."""
        self._closing = True
        if self.app.loop is not None:
            with contextlib.suppress(RuntimeError):     # the loop is closed already
                self.app.loop.call_soon_threadsafe(self._stop_waiting)

    def _stop_waiting(self) -> None:
        for task in list(self._waiting_turn):
            task.cancel()

    async def finish_sending(self, timeout: float = CLOSE_GRACE_S) -> None:
        """In the loop, at shutdown: no new reminder is sent, those in flight get
        `timeout` to finish and be recorded."""
        self.stop_sending()
        tasks = [t for r in self._rounds for t in (*r.senders, *r.recording)]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    def _reminder_texts(self) -> Texts:
        """The words in each currency, one price a round (the last good one, or none)."""
        quote, stale = None, None
        try:
            quote = self.app.quote()
        except PriceError as e:
            last = e.last if isinstance(e, PriceUnavailable) else None
            quote, stale = last, self.clock()
            log.warning("price unavailable for reminders (%s); sending them %s", e,
                        "with the last good price" if last else "without it")
        return Texts(reminder_texts(quote, stale) if quote else {}, self._default)

    async def _send_page(self, round_: _Round, page: list[reminders.Due], texts: Texts
                         ) -> reminders.Tally:
        """Queues the page's reminders on their chats' senders; returns (with what was
        settled meanwhile) once fewer than a page's worth wait, for the next page."""
        self._rounds.add(round_)
        if texts.choice:            # each user's currency, in one query for the page
            texts.users.update(await self.owner.run(store.user_currencies, [
                due.user_id for due in page], texts.default, tuple(texts.by_currency)))
        for due in page:
            if round_.taken[due.chat_id] >= CHAT_ROUND_MAX:
                round_.tally.deferred += 1
                continue
            round_.taken[due.chat_id] += 1
            round_.waiting += 1
            queue = round_.queues.setdefault(due.chat_id, [])
            queue.append(due)
            if len(queue) == 1:
                task = asyncio.create_task(self._send_chat(round_, due.chat_id, texts),
                                           name=f"reminders:{due.chat_id}")
                round_.senders.add(task)
                task.add_done_callback(round_.senders.discard)
        while round_.waiting >= reminders.PAGE_SIZE:
            round_.progress.clear()
            await round_.progress.wait()
        return round_.take_tally()

    async def _finish(self, round_: _Round) -> reminders.Tally:
        """After the last page: every chat's sends and records done."""
        try:
            while round_.senders:
                await asyncio.wait(list(round_.senders))
            await asyncio.gather(*round_.recording)   # the tally counts the records
        finally:
            self._rounds.discard(round_)
        return round_.take_tally()

    async def _send_chat(self, round_: _Round, chat_id: int, texts: Texts) -> None:
        """A chat's reminders, one after another: a chat gets one message a second
        anyway, and what the first answer teaches (403 blocked, 400 moved to a
        supergroup) applies to the rest without asking again."""
        queue = round_.queues[chat_id]
        try:
            while queue and not (self._closing or round_.token_refused):
                due = queue[0]
                if due.chat_id not in round_.refused:
                    text = due.notice or texts.of(due.user_id)
                    await self._send_reminder(due, text, round_)
                queue.pop(0)
                round_.waiting -= 1
                round_.progress.set()
        finally:
            round_.waiting -= len(queue)
            round_.progress.set()
            del round_.queues[chat_id]

    @contextlib.asynccontextmanager
    async def _slot(self, chat_id: int) -> AsyncIterator[HeldTurn]:
        """The chat's turn, then one of SEND_CONCURRENCY send slots: a reminder waits
        for its chat without holding a slot that other chats need."""
        task = asyncio.current_task()
        assert task is not None
        self._waiting_turn.add(task)            # stop_sending cancels the wait
        try:
            async with self.app.limiter.turn(chat_id) as turn, self._sending:
                self._waiting_turn.discard(task)
                yield turn
        finally:
            self._waiting_turn.discard(task)

    async def _send_reminder(self, due: reminders.Due, text: str, round_: _Round) -> None:
        if (due.id, due.due_at) in self._delivered:
            # Telegram has it already; only the database write failed. Never twice.
            await self._record_sent(due, round_, delivered_now=False)
            return
        chat_id = round_.moved.get(due.chat_id, due.chat_id)
        for attempt in range(1, SEND_ATTEMPTS + 1):
            try:
                async with self._slot(chat_id) as turn:
                    if self._closing or round_.token_refused:
                        return          # still due: the next round (or start) sends it
                    await self.app.application.bot.send_message(chat_id, text,
                                                                rate_limit_args=turn)
            except ChatMigrated as e:
                # The group became a supergroup: its reminders move, this one is sent there.
                count = await self.owner.run(reminders.move_chat, chat_id, e.new_chat_id,
                                             self.clock())
                log.warning("user %d: chat %d became supergroup %d; its %d reminder(s) moved "
                            "there", due.user_id, chat_id, e.new_chat_id, count)
                round_.moved[chat_id] = chat_id = e.new_chat_id
            except InvalidToken as e:
                if not round_.token_refused:
                    round_.token_refused = True
                    log.error("Telegram refused telegram.token while sending reminders (%s); "
                              "this round stops, its reminders stay due", e)
                round_.tally.failed += 1
                return
            except Forbidden as e:
                round_.refused.update((due.chat_id, chat_id))
                count = await self.owner.run(reminders.disable_chat, chat_id, self.clock())
                log.warning("user %d: Telegram refused reminder %d (%s); %d reminder(s) of "
                            "chat %d disabled until they write to the bot again",
                            due.user_id, due.id, e.message, count, chat_id)
                round_.tally.blocked += 1
                return
            except RetryAfter as e:
                log.warning("user %d: reminder %d still rate limited after %d waits (%s); "
                            "retried next minute", due.user_id, due.id, RETRY_AFTER_RETRIES, e)
                round_.tally.failed += 1
                return
            except BadRequest as e:
                await self._rejected(due, e)
                round_.tally.rejected += 1
                return
            except NetworkError as e:       # also TimedOut
                if attempt == SEND_ATTEMPTS:
                    log.warning("user %d: reminder %d not sent after %d attempts (%s); "
                                "retried next minute", due.user_id, due.id, attempt, e)
                    round_.tally.failed += 1
                    return
                await asyncio.sleep(retry.wait_s(attempt, SEND_BACKOFF_S))
            else:
                self._delivered.add((due.id, due.due_at))
                # Recorded meanwhile: the next message need not wait for the write.
                round_.recording.append(asyncio.create_task(
                    self._record_sent(due, round_, delivered_now=True)))
                return
        log.warning("user %d: reminder %d not sent: the chat moved %d times in a row; "
                    "retried next minute", due.user_id, due.id, SEND_ATTEMPTS)
        round_.tally.failed += 1

    async def _rejected(self, due: reminders.Due, error: BadRequest) -> None:
        """A 400: skipped until its next day; "chat not found" (the chat is gone, the
        user deleted their account) PAUSE_AFTER_DAYS days in a row: paused."""
        if "chat not found" in error.message.lower():
            paused = await self.owner.run(reminders.skip_or_pause, due.id, due.due_at,
                                          self.clock(), PAUSE_AFTER_DAYS)
            if paused:
                log.warning("user %d: Telegram answered %r for reminder %d for %d days in a "
                            "row; paused until someone writes to the bot from chat %d",
                            due.user_id, error.message, due.id, PAUSE_AFTER_DAYS, due.chat_id)
                return
        else:
            await self.owner.run(reminders.skip_occurrence, due.id, due.due_at, self.clock())
        log.error("user %d: Telegram rejected reminder %d (%s); skipped until its next day",
                  due.user_id, due.id, error.message)

    async def _record_sent(self, due: reminders.Due, round_: _Round, delivered_now: bool
                           ) -> None:
        """Records a delivered reminder. If the write fails (disk full, I/O error), the
        reminder stays due and later rounds retry only this write: _delivered keeps the
        message from being sent again while the process lives."""
        if delivered_now:
            round_.tally.sent += 1
        try:
            await self._record(due, round_)
        except Exception as e:  # noqa: BLE001 - any failed write: Telegram has the message
            log.error("user %d: reminder %d was delivered but could not be recorded (%s: %s); "
                      "it is not sent again, the record is retried next minute",
                      due.user_id, due.id, type(e).__name__, e)
            round_.tally.unrecorded += 1
            return
        self._delivered.discard((due.id, due.due_at))
        if delivered_now:
            log.debug("user %d: reminder %d sent", due.user_id, due.id)
        else:
            log.info("user %d: reminder %d, delivered earlier, is recorded now", due.user_id,
                     due.id)

    async def _record(self, due: reminders.Due, round_: _Round) -> None:
        """mark_sent for `due`, in the round's next transaction. One transaction per
        record made the owner's commits the bottleneck of a burst on PostgreSQL:
        each commit waits for its WAL flush (an fsync, tens of ms and at times
        most of a second on a busy disk), at 28 messages a second, behind one
        owner thread. Here the records that arrive while one transaction is being
        written go together in the next (group commit): each is written as soon as
        the database can take it, and a slow commit holds up no send."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        round_.unwritten.append((due, done))
        if round_.writer is None or round_.writer.done():
            round_.writer = asyncio.create_task(self._write_records(round_))
        await done

    async def _write_records(self, round_: _Round) -> None:
        while round_.unwritten:
            batch, round_.unwritten = round_.unwritten, []
            try:
                # One owner call: one transaction (fenced on PostgreSQL) for the batch,
                # each record in its own savepoint: one that fails fails alone.
                failed = await self.owner.run(reminders.mark_each_sent,
                                              [(d.id, d.due_at) for d, _ in batch],
                                              self.clock())
            except Exception as e:  # noqa: BLE001 - each waiting record reports it
                failed = {(d.id, d.due_at): e for d, _ in batch}
            for d, done in batch:
                if not done.done():
                    error = failed.get((d.id, d.due_at))
                    if error is None:
                        done.set_result(None)
                    else:
                        done.set_exception(error)
