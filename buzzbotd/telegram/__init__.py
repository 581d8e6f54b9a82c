"""The Telegram bot: python-telegram-bot's Application in the main thread.

Commands (SPEC "Telegram bot"): /start, /help, /price, /remind, /reminders,
/unremind for anyone; /status, /tweet, /pause, /resume for telegram.admin_ids.
Every reply and reminder goes through `ChatRateLimiter`: at most
MESSAGES_PER_S for the whole bot, one message a second per chat and
GROUP_MESSAGES a minute per group, and a 429's retry_after is waited out and
retried. Telegram's other answers (SPEC "Telegram's real behaviour"): a group
upgraded to a supergroup has its reminders moved to the new chat id; a user
who blocks the bot (a `my_chat_member` update with status kicked, or a 403)
has their reminders switched off; in groups, /cmd@otherbot is not ours.

The bot lives in the daemon's own event loop (the main thread's), started by
hand (initialize, start, updater.start_polling) rather than by run_polling, so
that the loop, the scheduler and X posting run whether Telegram answers or
not: `TelegramBot.run` connects in the background with backoff, marks the
part "telegram" degraded in notify.Health while it cannot, and a token that
Telegram refuses (401) stops only the bot, retried every TOKEN_RETRY_S.

Job threads hand coroutines to this loop with run_coroutine_threadsafe
(`TelegramBot.run_in_loop`), never to a second event loop: the reminder
dispatch round (buzzbotd.reminders.dispatch) runs in a scheduler worker and
sends each page of due reminders here, concurrently, within the limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from telegram import BotCommand, BotCommandScopeChat, ChatMember, Update
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    ChatMemberHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)
from telegram.request import HTTPXRequest

from buzzbotd import alerts, backoff, reminders, state, status, tls
from buzzbotd.clock import utc_now
from buzzbotd.config import Settings
from buzzbotd.db import DatabaseOwner
from buzzbotd.metrics import METRICS
from buzzbotd.notify import Health
from buzzbotd.price import PriceError, PriceUnavailable, Quote

log = logging.getLogger("buzzbotd.telegram")

# httpcore asks `import sniffio` several times per async request to learn which
# event loop runs it; sniffio is not installed (anyio 4 does not need it), so each
# ask searched sys.path on disk and failed: 57 µs a call here (more on an SD
# card), 2 µs once marked absent. httpcore then assumes asyncio, which runs here.
sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]
T = TypeVar("T")

POLLING_ERROR_LOG_EVERY_S = 60.0   # a stream of the same polling error is logged once a minute
# Telegram allows about 30 messages a second in all. We stay a little under it:
# a 429 costs every chat a pause of retry_after, so the margin pays for itself.
MESSAGES_PER_S = 28
CHAT_INTERVAL_S = 1.0          # at most one message a second in any one chat
GROUP_MESSAGES = 20            # Telegram: at most 20 messages a minute in one group
GROUP_PERIOD_S = 60.0
RETRY_AFTER_RETRIES = 3        # 429s waited out per message before giving up for this round
SEND_ATTEMPTS = 3              # per reminder, on network errors, within a round
SEND_BACKOFF_S = 1.0
SEND_CONCURRENCY = 32          # reminders in flight; bounds how long a reply waits behind them
CLOSE_GRACE_S = 2.0            # at stop: how long sends in flight get to finish
PRICE_MAX_AGE_S = 60           # one price fetch a minute serves every /price and reminder
TELEGRAM_TEXT_MAX = 4096
# getUpdates waits up to this long for a message (Telegram allows 50 s). Replies are
# as quick either way; an idle bot makes one request in 50 s instead of 10 s.
POLL_TIMEOUT_S = 50
# The updates the bot asks Telegram for: messages (commands) and changes of its own
# membership in a chat (a user who blocks the bot: status "kicked").
ALLOWED_UPDATES = ["message", "my_chat_member"]
CONNECT_FIRST_S = 1.0          # Telegram unreachable: retried after 1, 2, 4 … s,
CONNECT_MAX_S = 30.0           # at most this far apart
TOKEN_RETRY_S = 600.0          # a token Telegram refuses (401) is tried again this often
PART = "telegram"              # its name in notify.Health and STATUS=

PUBLIC_COMMANDS = [
    BotCommand("price", "the Bitcoin price now"),
    BotCommand("remind", "daily reminder, e.g. /remind 08:30 Europe/Berlin"),
    BotCommand("reminders", "your reminders"),
    BotCommand("unremind", "remove your reminders"),
    BotCommand("help", "what I can do"),
]
ADMIN_COMMANDS = [
    BotCommand("status", "health, posts and counts"),
    BotCommand("tweet", "post the price tweet now"),
    BotCommand("pause", "pause scheduled tweets"),
    BotCommand("resume", "resume scheduled tweets"),
    BotCommand("alerts", "alerts on or off for you: /alerts off"),
]
HELP = """I tell you the Bitcoin price, and remind you of it every day.

/price – the price now
/remind 08:30 – a reminder every day at 08:30 (24-hour), in your last timezone
/remind 08:30 Asia/Kolkata – …in that timezone (a name, or an offset like +05:30 or -4)
/reminders – your reminders
/unremind – remove them all (/unremind 08:30 removes one)"""
ADMIN_HELP = """

For admins:
/status – health, last and next tweets, counts
/tweet – post the price tweet now
/pause, /resume – stop or restart scheduled tweets
/alerts off, /alerts on – mute or unmute the alerts I send you"""


@dataclass
class _Page:
    """What one page of a reminder round has learnt so far."""

    tally: reminders.Tally = field(default_factory=reminders.Tally)
    refused: set[int] = field(default_factory=set)        # chats that answered 403
    moved: dict[int, int] = field(default_factory=dict)   # group → its supergroup
    token_refused: bool = False                            # 401: the rest waits


@dataclass
class _ChatTurn:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    free_at: float = 0.0          # loop time from which the chat may get its next message
    users: int = 0
    answered: deque[float] = field(default_factory=deque)   # groups: the last few answers


class ChatRateLimiter(AIORateLimiter):
    """AIORateLimiter limits the whole bot and group chats but not private chats,
    where Telegram also allows only one message a second. Here requests to one chat
    are serialised, each starting CHAT_INTERVAL_S after the previous one was
    *answered*: Telegram received it before it answered, so network jitter can never
    squeeze two messages to a chat into one second at Telegram's end.

    Groups get at most GROUP_MESSAGES in any GROUP_PERIOD_S, counted the same way
    (a message starts GROUP_PERIOD_S after the answer to the one GROUP_MESSAGES
    before it). AIORateLimiter's own group limit is off: a leaky bucket lets 20 go
    at once and then one every 3 s, up to 39 in one minute."""

    def __init__(self, chat_interval_s: float = CHAT_INTERVAL_S,
                 group_messages: int = GROUP_MESSAGES, group_period_s: float = GROUP_PERIOD_S,
                 **kwargs: Any) -> None:
        super().__init__(group_max_rate=0, **kwargs)
        self._chat_interval_s = chat_interval_s
        self._group_messages = group_messages
        self._group_period_s = group_period_s
        self._turns: dict[object, _ChatTurn] = {}

    async def process_request(self, callback: Callable[..., Coroutine[Any, Any, Any]],
                              args: Any, kwargs: dict[str, Any], endpoint: str,
                              data: dict[str, Any], rate_limit_args: int | None) -> Any:
        callback = _counting_429(callback)
        chat_id = data.get("chat_id")
        if chat_id is None:
            return await super().process_request(callback, args, kwargs, endpoint, data,
                                                 rate_limit_args)
        loop = asyncio.get_running_loop()
        turn = self._turns.setdefault(str(chat_id), _ChatTurn())
        group = _is_group(chat_id)
        turn.users += 1
        try:
            async with turn.lock:
                wait = turn.free_at - loop.time()
                if group and len(turn.answered) >= self._group_messages:
                    wait = max(wait, turn.answered[0] + self._group_period_s - loop.time())
                if wait > 0:
                    await asyncio.sleep(wait)
                try:
                    return await super().process_request(callback, args, kwargs, endpoint,
                                                         data, rate_limit_args)
                finally:
                    answered = loop.time()
                    turn.free_at = answered + self._chat_interval_s
                    if group:
                        turn.answered.append(answered)
                        while len(turn.answered) > self._group_messages:
                            turn.answered.popleft()
        finally:
            turn.users -= 1
            self._forget_idle_chats(loop.time())

    def _forget_idle_chats(self, now: float) -> None:
        # A chat's entry matters only for CHAT_INTERVAL_S after its last message (a
        # group's for GROUP_PERIOD_S).
        if len(self._turns) > 1024:
            for key in [k for k, t in self._turns.items()
                        if not t.users and t.free_at <= now
                        and (not t.answered or t.answered[-1] + self._group_period_s <= now)]:
                del self._turns[key]


def _is_group(chat_id: object) -> bool:
    """As python-telegram-bot tells: a negative id, or an @name (channels, supergroups)."""
    try:
        return int(chat_id) < 0         # type: ignore[call-overload]
    except (TypeError, ValueError):
        return isinstance(chat_id, str)


def _counting_429(callback: Callable[..., Coroutine[Any, Any, Any]]
                  ) -> Callable[..., Coroutine[Any, Any, Any]]:
    """The request as the rate limiter makes it, each 429 answer counted for /metrics."""
    async def request(*args: Any, **kwargs: Any) -> Any:
        try:
            return await callback(*args, **kwargs)
        except RetryAfter:
            METRICS.inc("telegram_429_total")
            raise
    return request


class _ReportedByUs(logging.Filter):
    """Drops python-telegram-bot's traceback for errors the bot reports itself in one
    line: an invalid token (naming telegram.token) and a 429 that outlasted
    the retries (the reminder is retried next minute)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, InvalidToken | RetryAfter)


# Loggers python-telegram-bot raises those from (logger filters do not inherit).
_PTB_LOGGERS = ("telegram.ext", "telegram.ext.AIORateLimiter", "telegram.ext.Updater")


class TelegramBot:
    def __init__(self, settings: Settings, owner: DatabaseOwner, prices: Any, poster: Any,
                 report: Callable[[], dict[str, Any]],
                 clock: Callable[[], datetime] = utc_now,
                 limiter: ChatRateLimiter | None = None) -> None:
        self.settings = settings
        self.owner = owner
        self.prices = prices
        self.poster = poster
        self.report = report
        self.clock = clock
        self.loop: asyncio.AbstractEventLoop | None = None
        # Set by the daemon: refreshes systemd's STATUS= after /pause, /resume or a 409.
        self.on_state_change: Callable[[], Awaitable[None]] | None = None
        self._last_logged: dict[str, float] = {}
        self._closing = False
        self._rounds: set[asyncio.Task] = set()
        self._price_task: asyncio.Future[Quote] | None = None
        # (reminder id, due_at) that Telegram accepted but the database has not recorded.
        self._delivered: set[tuple[int, datetime]] = set()
        self.alerts_enabled = False     # set by the daemon when telegram.alert_admins is on
        self.connected = False         # initialised and polling; reminders wait until then
        self.on_connected: Callable[[], object] | None = None   # set by the daemon
        for name in _PTB_LOGGERS:
            logging.getLogger(name).addFilter(_ReportedByUs())
        t = settings.telegram
        limiter = limiter or ChatRateLimiter(overall_max_rate=1,
                                             overall_time_period=1 / MESSAGES_PER_S,
                                             max_retries=RETRY_AFTER_RETRIES)
        self.application = (
            ApplicationBuilder()
            .token(t.token.reveal())
            .base_url(f"{t.api_base}/bot")
            .base_file_url(f"{t.api_base}/file/bot")
            .rate_limiter(limiter)
            # PTB's defaults (256 connections; 1 for getUpdates), sharing one TLS context.
            .request(HTTPXRequest(connection_pool_size=256,
                                  httpx_kwargs={"verify": tls.context()}))
            .get_updates_request(HTTPXRequest(connection_pool_size=1,
                                              httpx_kwargs={"verify": tls.context()}))
            .concurrent_updates(16)    # a slow /tweet or /price never holds up other users
            .post_init(self._post_init)
            .build()
        )
        add = self.application.add_handler
        add(TypeHandler(Update, self._touch), group=-1)
        add(ChatMemberHandler(self.on_my_chat_member, ChatMemberHandler.MY_CHAT_MEMBER))
        add(CommandHandler(["start", "help"], self.cmd_help))
        add(CommandHandler("price", self.cmd_price))
        add(CommandHandler("remind", self.cmd_remind))
        add(CommandHandler("reminders", self.cmd_reminders))
        add(CommandHandler("unremind", self.cmd_unremind))
        add(CommandHandler("status", self.cmd_status))
        add(CommandHandler("tweet", self.cmd_tweet))
        add(CommandHandler("pause", self.cmd_pause))
        add(CommandHandler("resume", self.cmd_resume))
        add(CommandHandler("alerts", self.cmd_alerts))
        add(MessageHandler(filters.COMMAND, self.cmd_unknown))
        add(MessageHandler(filters.TEXT & filters.ChatType.PRIVATE, self.cmd_unknown))
        self.application.add_error_handler(self.on_error)

    # -- life cycle ----------------------------------------------------------

    async def run(self, health: Health) -> None:
        """Connects and polls until cancelled (by stop()): in the background, with
        backoff, never raising. Runs as a task in the daemon's loop."""
        self.loop = asyncio.get_running_loop()
        delay = CONNECT_FIRST_S
        while True:
            wait = await self._connect(health)
            if wait is None:                   # polling; returns when polling ended
                delay = CONNECT_FIRST_S
                wait = await self._poll_until_it_ends(health)
            else:
                wait, delay = wait or delay, min(delay * 2, CONNECT_MAX_S)
            await asyncio.sleep(wait)

    async def _connect(self, health: Health) -> float | None:
        """initialize (getMe) and start polling: None once polling, else how long to
        wait before the next try (0: the current backoff)."""
        app = self.application
        try:
            self.application.run_polling(stop_signals=None, allowed_updates=ALLOWED_UPDATES,
                                         timeout=POLL_TIMEOUT_S, close_loop=False)
            await app.initialize()
            await self._post_init(app)
            await app.start()
            await app.updater.start_polling(  # type: ignore[union-attr]
                allowed_updates=["message"], timeout=POLL_TIMEOUT_S,
                error_callback=self._polling_error)
        except InvalidToken:
            await self._reset()
            self._token_refused(health)
            return TOKEN_RETRY_S
        except TelegramError as e:
            await self._reset()
            reason = f"cannot reach Telegram at {self.settings.telegram.api_base} ({e})"
            if PART not in health.degraded() or self._due_to_log("connect"):
                log.warning("%s; retrying in the background", reason)
            health.degrade(PART, reason)
            return 0
        self.connected = True
        health.recover(PART)
        log.info("connected to Telegram as @%s; polling for updates", app.bot.username)
        if self.on_connected is not None:
            self.on_connected()
        return None

    async def _poll_until_it_ends(self, health: Health) -> float:
        """Waits while polling runs. PTB's polling loop retries network errors by
        itself and ends only on a refused token; this learns of it through the
        polling task, which PTB names but does not expose."""
        polling = [t for t in asyncio.all_tasks()
                   if t.get_name() == "Updater:start_polling:polling_task"]
        if polling:
            await asyncio.wait(polling)
        self.connected = False
        await self._reset()
        self._token_refused(health)
        return TOKEN_RETRY_S

    def _token_refused(self, health: Health) -> None:
        reason = (f"telegram.token refused by {self.settings.telegram.api_base} (401 "
                  f"Unauthorized); expected the token @BotFather gave you; the bot is "
                  f"stopped, X posting goes on; tried again every {TOKEN_RETRY_S / 60:.0f} min")
        log.error("%s: %s", self.settings.path, reason)
        health.degrade(PART, "telegram.token refused (401 Unauthorized)")

    def _polling_error(self, error: TelegramError) -> None:
        # What run_polling does: polling errors go to the error handlers (on_error).
        self.application.create_task(self.application.process_error(update=None, error=error))

    async def _reset(self) -> None:
        """Back to not started, so the next _connect starts from scratch (a refused
        token must be checked again by getMe, which initialize does only once)."""
        self.connected = False
        app = self.application
        with contextlib.suppress(TelegramError, RuntimeError):
            if app.updater is not None and app.updater.running:
                await app.updater.stop()
        with contextlib.suppress(TelegramError, RuntimeError):
            if app.running:
                await app.stop()
        with contextlib.suppress(TelegramError, RuntimeError):
            await app.shutdown()

    def stop_sending(self) -> None:
        """At shutdown, first: no new reminder is sent, so a dispatch round ends as
        soon as the sends in flight are answered and recorded."""
        self._closing = True

    async def stop(self, runner: asyncio.Task | None) -> None:
        """In the loop, at shutdown: no new reminder is sent, those in flight get
        CLOSE_GRACE_S to finish (and be recorded), then polling stops. The caller
        bounds the whole with a timeout."""
        self.stop_sending()
        if self._rounds:
            await asyncio.wait(list(self._rounds), timeout=CLOSE_GRACE_S)
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        await self._reset()

    def run_in_loop(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None
                    ) -> T:
        """From a job thread: runs `coroutine` in the bot's loop and waits for its result."""
        assert self.loop is not None, "bot loop not started"
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    async def _post_init(self, application: Application) -> None:
        """Publishes the command menu; the admins' own chats also list their commands."""
        try:
            await application.bot.set_my_commands(PUBLIC_COMMANDS)
        except TelegramError as e:
            log.warning("could not publish the command menu (setMyCommands): %s", e)
        for admin_id in sorted(self.settings.telegram.admin_ids):
            await self._publish_admin_menu(admin_id)

    async def _publish_admin_menu(self, admin_id: int) -> None:
        try:
            await self.application.bot.set_my_commands(PUBLIC_COMMANDS + ADMIN_COMMANDS,
                                                       scope=BotCommandScopeChat(admin_id))
        except TelegramError as e:
            # Normal until the admin has written to the bot once; /start retries.
            log.info("admin command menu for user %d not set yet: %s", admin_id, e)

    # -- reminders -------------------------------------------------------------

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

    def _quote(self) -> Quote:
        return self.prices.latest(PRICE_MAX_AGE_S)

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
                    await self._send_reminder(due, text, page_)

        try:
            await asyncio.gather(*(worker() for _ in range(min(SEND_CONCURRENCY,
                                                               len(by_chat)))))
        finally:
            self._rounds.discard(task)
        return page_.tally

    async def _send_reminder(self, due: reminders.Due, text: str, page: _Page) -> None:
        tally = page.tally
        if (due.id, due.due_at) in self._delivered:
            # Telegram has it already; only the database write failed. Never twice.
            await self._record_sent(due, tally, delivered_now=False)
            return
        chat_id = page.moved.get(due.chat_id, due.chat_id)
        for attempt in range(1, SEND_ATTEMPTS + 1):
            try:
                await self.application.bot.send_message(chat_id, text)
            except ChatMigrated as e:
                # The group became a supergroup: its reminders move, this one is sent there.
                count = await self._db(reminders.move_chat, chat_id, e.new_chat_id,
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
                count = await self._db(reminders.disable_chat, chat_id, self.clock())
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
                await self._db(reminders.skip_occurrence, due.id, due.due_at, self.clock())
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
                await asyncio.sleep(backoff.step(attempt, SEND_BACKOFF_S))
            else:
                self._delivered.add((due.id, due.due_at))
                await self._record_sent(due, tally, delivered_now=True)
                return
        log.warning("user %d: reminder %d not sent: the chat moved %d times in a row; "
                    "retried next minute", due.user_id, due.id, SEND_ATTEMPTS)
        tally.failed += 1

    async def _record_sent(self, due: reminders.Due, tally: reminders.Tally,
                           delivered_now: bool) -> None:
        """Records a delivered reminder. If the write fails (disk full, I/O error), the
        reminder stays due and later rounds retry only this write: _delivered keeps the
        message from being sent again while the process lives."""
        if delivered_now:
            tally.sent += 1
        try:
            await self._db(reminders.mark_sent, due.id, due.due_at, self.clock())
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

    # -- commands --------------------------------------------------------------

    async def _touch(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Before every handler: record the user (and re-enable their refused reminders).
        Only a message of theirs counts as writing to the bot: not a change of its
        membership, and not a command for another bot in a group."""
        if update.message is None or _for_another_bot(update, context.bot.username):
            return
        user, chat = update.effective_user, update.effective_chat
        if user is not None and chat is not None:
            await self._db(reminders.touch_user, user.id, chat.id, self.clock(),
                           self.settings.telegram.default_timezone)

    async def cmd_help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        user = _user_id(update)
        admin = user in self.settings.telegram.admin_ids
        if admin and _command(update) == "start":
            await self._publish_admin_menu(user)
        await _reply(update, HELP + (ADMIN_HELP if admin else ""))

    async def cmd_price(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        try:
            quote = await self._shared_quote()
        except PriceUnavailable as e:
            if e.last is not None:
                log.info("user %d: /price answered with the last good price (%s)",
                         _user_id(update), e)
                await _reply(update, stale_price_text(e.last, self.clock()))
                return
            log.warning("user %d: /price failed: %s", _user_id(update), e)
            await _reply(update, "Sorry, I can't get the price right now. "
                                 "Please try again in a minute.")
            return
        await _reply(update, price_text(quote))

    async def _shared_quote(self) -> Quote:
        """The price for /price: every /price asking at once waits for one worker thread
        (which itself shares a request with the reminders and the poster), so a crowd of
        /price during a slow price API does not fill the default executor."""
        if self._price_task is None or self._price_task.done():
            self._price_task = asyncio.ensure_future(asyncio.to_thread(self._quote))
        return await asyncio.shield(self._price_task)

    async def cmd_remind(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        try:
            request = reminders.parse_request(context.args or [])
        except reminders.InputError as e:
            await _reply(update, str(e))
            return
        assert update.effective_chat is not None
        result = await self._db(reminders.set_reminder, _user_id(update),
                                update.effective_chat.id, request.at, request.timezone,
                                self.clock(), self.settings.telegram.default_timezone)
        if result.reminder is None:
            await _reply(update, f"You already have {reminders.MAX_PER_USER} reminders, the "
                                 "most I keep. /reminders lists them; /unremind HH:MM removes "
                                 "one.")
            return
        r = result.reminder
        first = {"created": "Done! I'll remind you", "updated": "Changed: I'll remind you",
                 "unchanged": "You already have it: I'll remind you"}[result.outcome]
        await _reply(update, f"{first} every day at {r.local_time} ({r.timezone}), with the "
                             f"price. Next: {self._when(r)}.")

    async def cmd_reminders(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        views = await self._db(reminders.user_reminders, _user_id(update))
        if not views:
            await _reply(update, "You have no reminders. Set one with /remind 08:30 "
                                 "(or /remind 08:30 Europe/Berlin).")
            return
        lines = [f"• {r.local_time} {r.timezone} – "
                 + (f"next {self._when(r)}" if r.enabled else
                    "off: Telegram would not deliver to that chat")
                 for r in views]
        await _reply(update, "Your reminders:\n" + "\n".join(lines))

    async def cmd_unremind(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        args = context.args or []
        try:
            if len(args) > 1:
                raise reminders.InputError("Use /unremind to remove all your reminders, or "
                                           "/unremind 08:30 to remove one.")
            at = reminders.parse_time(args[0]) if args else None
        except reminders.InputError as e:
            await _reply(update, str(e))
            return
        removed = await self._db(reminders.remove_reminders, _user_id(update), at)
        if removed:
            await _reply(update, f"Removed {removed} reminder{'s' if removed != 1 else ''}.")
        elif at is not None:
            await _reply(update, f"You have no reminder at {at:%H:%M}. /reminders lists yours.")
        else:
            await _reply(update, "You had no reminders.")

    async def cmd_status(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if await self._refused(update):
            return
        report = await asyncio.wrap_future(self.owner.submit(self.report))
        await _reply(update, status.render(report, os.getpid())[:TELEGRAM_TEXT_MAX])

    async def cmd_tweet(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if await self._refused(update):
            return
        if self.poster is None:
            await _reply(update, "X posting is off (x.enabled = false), so there is nothing "
                                 "to tweet.")
            return
        post = await asyncio.to_thread(self.poster.post_now)
        log.info("admin %d: /tweet %s: %s", _user_id(update), post.slot_key, post.state)
        if post.state == "posted":
            await _reply(update, f"Posted (tweet {post.tweet_id}):\n{post.text}")
        else:
            await _reply(update, f"Not posted ({post.state}): {post.reason or 'no reason given'}")

    async def cmd_pause(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._set_paused(update, True)

    async def cmd_resume(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._set_paused(update, False)

    async def _set_paused(self, update: Update, paused: bool) -> None:
        if await self._refused(update):
            return
        await self._db(state.set_paused, paused, self.clock())
        await self._state_changed()
        log.info("admin %d: scheduled posting %s", _user_id(update),
                 "paused" if paused else "resumed")
        text = ("Scheduled tweets paused; slots that pass meanwhile are skipped. /resume to "
                "restart." if paused else "Scheduled tweets resumed.")
        if not self.settings.x.enabled:
            text += " (X posting is off in the configuration anyway.)"
        await _reply(update, text)

    async def on_my_chat_member(self, update: Update,
                                context: ContextTypes.DEFAULT_TYPE) -> None:
        """The bot's membership changed: a user who blocked it ("kicked" in their private
        chat), or a group that removed it, gets no more reminders, at once."""
        change = update.my_chat_member
        assert change is not None
        status = change.new_chat_member.status
        if status not in (ChatMember.BANNED, ChatMember.LEFT):
            return
        count = await self._db(reminders.disable_chat, change.chat.id, self.clock())
        log.warning("user %d: the bot was %s from chat %d; %d reminder(s) disabled until "
                    "they write to the bot again", change.from_user.id,
                    "blocked" if status == ChatMember.BANNED else "removed", change.chat.id,
                    count)

    async def cmd_alerts(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if await self._refused(update):
            return
        args = [a.lower() for a in context.args or []]
        if args not in (["on"], ["off"]):
            await _reply(update, "Use /alerts off to stop the alerts I send you, /alerts on to "
                                 "get them again.")
            return
        user = _user_id(update)
        await self._db(alerts.set_muted, user, args == ["off"])
        log.info("admin %d: alerts %s", user, args[0])
        text = ("Alerts on: I'll message you when something breaks, and when it's over."
                if args == ["on"] else "Alerts off for you. /alerts on to get them again.")
        if not self.alerts_enabled:
            text += " (telegram.alert_admins is false in the configuration, so none are sent.)"
        await _reply(update, text)

    async def send_alert(self, chat_id: int, text: str) -> None:
        """An alert to an admin (buzzbotd.alerts), through the same rate limits."""
        await self.application.bot.send_message(chat_id, text[:TELEGRAM_TEXT_MAX])

    async def cmd_unknown(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if _for_another_bot(update, context.bot.username):
            # In a group, /price@otherbot is another bot's business: no reply.
            log.debug("chat %d: %s is for another bot; ignored", update.effective_chat.id
                      if update.effective_chat else 0, _command_word(update))
            return
        command = _command(update)
        head = f"I don't know /{command}." if command else "I only understand commands."
        await _reply(update, f"{head} /help lists what I can do.")

    async def _refused(self, update: Update) -> bool:
        """True (after a polite refusal) if the sender is not an admin."""
        user = _user_id(update)
        if user in self.settings.telegram.admin_ids:
            return False
        log.warning("user %d is not an admin and tried /%s; refused", user, _command(update))
        await _reply(update, "Sorry, that command is for the bot's operators only. "
                             "/help lists what you can do.")
        return True

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        error = context.error
        if isinstance(error, Conflict):
            METRICS.inc("telegram_409_total")
            METRICS.problem("telegram", "409 Conflict: another bot instance polls this token",
                            ttl_s=status.CONFLICT_SHOWN_FOR.total_seconds())
            if self._due_to_log("conflict"):
                log.error("409 Conflict from Telegram: another bot instance is polling this "
                          "token somewhere else; stop it (this one keeps retrying)")
                await self._db(state.put_time, state.TELEGRAM_CONFLICT, self.clock())
                await self._state_changed()
            return
        if update is None and isinstance(error, NetworkError):
            if self._due_to_log("network"):
                log.warning("cannot reach Telegram to poll for updates (%s); retrying", error)
            return
        if isinstance(error, TelegramError) and isinstance(update, Update):
            # Telegram refused or did not take a reply (blocked, network): not a bug here.
            log.warning("user %s: could not answer: %s",
                        update.effective_user.id if update.effective_user else "?", error)
            return
        log.error("error while handling %s", "polling" if update is None else "an update",
                  exc_info=error)
        if isinstance(update, Update) and update.effective_message is not None:
            try:
                await update.effective_message.reply_text(
                    "Sorry, something went wrong on my side. Please try again later.")
            except TelegramError as e:
                log.warning("could not tell the user about the error: %s", e)

    # -- helpers ---------------------------------------------------------------

    async def _state_changed(self) -> None:
        if self.on_state_change is not None:
            await self.on_state_change()

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.wrap_future(self.owner.submit(fn, *args))

    def _due_to_log(self, kind: str) -> bool:
        """At most one log line per kind of polling error per POLLING_ERROR_LOG_EVERY_S."""
        now = time.monotonic()
        last = self._last_logged.get(kind)
        if last is not None and now - last < POLLING_ERROR_LOG_EVERY_S:
            return False
        self._last_logged[kind] = now
        return True

    def _when(self, reminder: reminders.ReminderView) -> str:
        local = reminder.next_due_at.astimezone(reminders.zone(reminder.timezone))
        minutes = max(round((reminder.next_due_at - self.clock()).total_seconds() / 60), 0)
        hours, minutes = divmod(minutes, 60)
        return f"{local:%a %d %b %H:%M} (in {f'{hours}h ' if hours else ''}{minutes}min)"


def price_text(quote: Quote) -> str:
    return f"Bitcoin is at ${quote.price:,.2f} ({quote.change_24h:+.2f}% in 24h)."


def stale_price_text(quote: Quote, now: datetime) -> str:
    """The last good price while the price API fails, saying how old it is."""
    return (f"Bitcoin was at ${quote.price:,.2f} ({quote.change_24h:+.2f}% in 24h) as of "
            f"{age_text((now - quote.fetched_at).total_seconds())}; I can't reach the price "
            "service right now.")


def age_text(seconds: float) -> str:
    """'12 min ago', '3 h 5 min ago', '2 days ago'."""
    minutes = max(int(seconds // 60), 0)
    if minutes < 1:
        return "less than a minute ago"
    if minutes < 60:
        return f"{minutes} min ago"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min ago" if minutes else f"{hours} h ago"
    return f"{hours // 24} days ago"


def _user_id(update: Update) -> int:
    assert update.effective_user is not None
    return update.effective_user.id


def _command(update: Update) -> str:
    """'remind' for '/remind@buzzbot 08:30'; '' for plain text."""
    text = update.effective_message.text if update.effective_message else None
    if not text or not text.startswith("/"):
        return ""
    return text.split()[0][1:].split("@")[0][:32]


def _command_word(update: Update) -> str:
    """'/remind@buzzbot' for '/remind@buzzbot 08:30'; '' for plain text."""
    text = update.effective_message.text if update.effective_message else None
    return text.split()[0][:64] if text and text.startswith("/") else ""


def _for_another_bot(update: Update, username: str | None) -> bool:
    """True for '/price@otherbot': a command addressed to a bot other than this one."""
    _, at, name = _command_word(update).partition("@")
    return bool(at) and name.lower() != (username or "").lower()


async def _reply(update: Update, text: str) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text(text)
