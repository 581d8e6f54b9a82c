"""The reminder send round: what happens to each due reminder Telegram is sent.

The scheduler's minute job (a worker thread) calls `dispatch_reminders`;
buzzbotd.reminders.dispatch picks the due reminders a page at a time and hands
each page to `send_reminders` in the bot's loop. Each reminder ends in one of
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
- given up for today (other 400 BadRequest): skipped until its next day
  (reminders.skip_occurrence).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

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
from buzzbotd.telegram.app import BotApp
from buzzbotd.telegram.ratelimit import RETRY_AFTER_RETRIES
from buzzbotd.telegram.texts import price_text, stale_price_text

log = logging.getLogger("buzzbotd.telegram")

SEND_ATTEMPTS = 3              # per reminder, on network errors, within a round
SEND_BACKOFF_S = 1.0
SEND_CONCURRENCY = 32          # reminders in flight; bounds how long a reply waits behind them


@dataclass
class _Page:
    """What one page of a reminder round has learnt so far."""

    tally: reminders.Tally = field(default_factory=reminders.Tally)
    refused: set[int] = field(default_factory=set)        # chats that answered 403
    moved: dict[int, int] = field(default_factory=dict)   # group → its supergroup
    token_refused: bool = False                            # 401: the rest waits
    # Delivered, waiting for the next transaction (see Delivery._record), and the
    # task that writes them.
    unwritten: list[tuple[reminders.Due, asyncio.Future[None]]] = field(default_factory=list)
    writer: asyncio.Task | None = None
    recording: list[asyncio.Task] = field(default_factory=list)   # _record_sent of each sent


class Delivery(BotApp):
    """The reminder round, as part of TelegramBot."""

    def dispatch_reminders(self) -> reminders.Tally:
        """Sends the reminders that are due (scheduler job, in a worker thread)."""
        if not self.connected:
            # Still due: sent once the bot is connected, if within reminder_grace_s,
            # else skipped by the first round then (reminders.due_page).
            log.debug("reminders wait: the bot is not connected to Telegram")
            return reminders.Tally()
        return reminders.dispatch(self.owner, self._reminder_text, self._send_from_thread,
                           self.clock, self.settings.telegram.reminder_grace_s,
                           should_stop=lambda: self._closing)

    def _reminder_text(self) -> str:
        try:
            return f"⏰ Your daily Bitcoin reminder: {price_text(self._quote())}"
        except PriceUnavailable as e:
            if e.last is not None:
                log.warning("price unavailable for reminders (%s); sending them with the "
                            "last good price", e)
                return ("⏰ Your daily Bitcoin reminder: "
                        f"{stale_price_text(e.last, self.clock())}")
            error: PriceError = e
        except PriceError as e:
            error = e
        # A reminder must arrive, even without its price.
        log.warning("price unavailable for reminders (%s); sending them without it", error)
        return ("⏰ Your daily Bitcoin reminder. I can't get the price right now, sorry; "
                "try /price in a minute.")

    def _send_from_thread(self, page: list[reminders.Due], text: str) -> reminders.Tally:
        return self.run_in_loop(self.send_reminders(page, text))

    async def send_reminders(self, page: list[reminders.Due], text: str) -> reminders.Tally:
        """Sends `text` for each due reminder, SEND_CONCURRENCY at a time within the
        rate limits, recording each outcome as soon as Telegram answers."""
        task = asyncio.current_task()
        assert task is not None
        self._rounds.add(task)
        page_ = _Page()
        # One worker takes all of a chat's reminders and sends them one after another:
        # a chat gets one message a second anyway, and what the first answer teaches
        # (403 blocked, 400 moved to a supergroup) applies to the rest without asking again.
        by_chat: dict[int, list[reminders.Due]] = {}
        for due in page:
            by_chat.setdefault(due.chat_id, []).append(due)
        queue = iter(by_chat.values())  # shared: each chat is taken by one worker

        async def worker() -> None:
            for dues in queue:
                for due in dues:
                    if self._closing or page_.token_refused:
                        return
                    if due.chat_id in page_.refused:
                        break
                    await self._send_reminder(due, due.notice or text, page_)

        try:
            await asyncio.gather(*(worker() for _ in range(min(SEND_CONCURRENCY,
                                                               len(by_chat)))))
        finally:
            await asyncio.gather(*page_.recording)   # the page's tally counts its records
            self._rounds.discard(task)
        return page_.tally

    async def _send_reminder(self, due: reminders.Due, text: str, page: _Page) -> None:
        tally = page.tally
        if (due.id, due.due_at) in self._delivered:
            # Telegram has it already; only the database write failed. Never twice.
            await self._record_sent(due, page, delivered_now=False)
            return
        chat_id = page.moved.get(due.chat_id, due.chat_id)
        for attempt in range(1, SEND_ATTEMPTS + 1):
            try:
                await self.application.bot.send_message(chat_id, text)
            except ChatMigrated as e:
                # The group became a supergroup: its reminders move, this one is sent there.
                count = await self.owner.run(reminders.move_chat, chat_id, e.new_chat_id,
                                             self.clock())
                log.warning("user %d: chat %d became supergroup %d; its %d reminder(s) moved "
                            "there", due.user_id, chat_id, e.new_chat_id, count)
                page.moved[chat_id] = chat_id = e.new_chat_id
            except InvalidToken as e:
                if not page.token_refused:
                    page.token_refused = True
                    log.error("Telegram refused telegram.token while sending reminders (%s); "
                              "this round stops, its reminders stay due", e)
                tally.failed += 1
                return
            except Forbidden as e:
                page.refused.update((due.chat_id, chat_id))
                count = await self.owner.run(reminders.disable_chat, chat_id, self.clock())
                log.warning("user %d: Telegram refused reminder %d (%s); %d reminder(s) of "
                            "chat %d disabled until they write to the bot again",
                            due.user_id, due.id, e.message, count, chat_id)
                tally.blocked += 1
                return
            except RetryAfter as e:
                log.warning("user %d: reminder %d still rate limited after %d waits (%s); "
                            "retried next minute", due.user_id, due.id, RETRY_AFTER_RETRIES, e)
                tally.failed += 1
                return
            except BadRequest as e:
                await self.owner.run(reminders.skip_occurrence, due.id, due.due_at, self.clock())
                log.error("user %d: Telegram rejected reminder %d (%s); skipped until its "
                          "next day", due.user_id, due.id, e.message)
                tally.rejected += 1
                return
            except NetworkError as e:       # also TimedOut
                if attempt == SEND_ATTEMPTS:
                    log.warning("user %d: reminder %d not sent after %d attempts (%s); "
                                "retried next minute", due.user_id, due.id, attempt, e)
                    tally.failed += 1
                    return
                await asyncio.sleep(retry.step(attempt, SEND_BACKOFF_S))
            else:
                self._delivered.add((due.id, due.due_at))
                # Recorded meanwhile: the next message need not wait for the write.
                page.recording.append(asyncio.create_task(
                    self._record_sent(due, page, delivered_now=True)))
                return
        log.warning("user %d: reminder %d not sent: the chat moved %d times in a row; "
                    "retried next minute", due.user_id, due.id, SEND_ATTEMPTS)
        tally.failed += 1

    async def _record_sent(self, due: reminders.Due, page: _Page, delivered_now: bool
                           ) -> None:
        """Records a delivered reminder. If the write fails (disk full, I/O error), the
        reminder stays due and later rounds retry only this write: _delivered keeps the
        message from being sent again while the process lives."""
        tally = page.tally
        if delivered_now:
            tally.sent += 1
        try:
            await self._record(due, page)
        except Exception as e:  # noqa: BLE001 - any failed write: Telegram has the message
            log.error("user %d: reminder %d was delivered but could not be recorded (%s: %s); "
                      "it is not sent again, the record is retried next minute",
                      due.user_id, due.id, type(e).__name__, e)
            tally.unrecorded += 1
            return
        self._delivered.discard((due.id, due.due_at))
        if delivered_now:
            log.debug("user %d: reminder %d sent", due.user_id, due.id)
        else:
            log.info("user %d: reminder %d, delivered earlier, is recorded now", due.user_id,
                     due.id)

    async def _record(self, due: reminders.Due, page: _Page) -> None:
        """mark_sent for `due`, in the page's next transaction. One transaction per
        record made the owner's commits the bottleneck of a burst on PostgreSQL:
        each commit waits for its WAL flush (an fsync, tens of ms and at times
        most of a second on a busy disk), at 28 messages a second, behind one
        owner thread. Here the records that arrive while one transaction is being
        written go together in the next (group commit): each is written as soon as
        the database can take it, and a slow commit holds up no send."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        page.unwritten.append((due, done))
        if page.writer is None or page.writer.done():
            page.writer = asyncio.create_task(self._write_records(page))
        await done

    async def _write_records(self, page: _Page) -> None:
        while page.unwritten:
            batch, page.unwritten = page.unwritten, []
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
