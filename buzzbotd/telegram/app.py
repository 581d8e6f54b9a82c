"""The bot's life cycle: python-telegram-bot's Application in the daemon's loop.

The bot lives in the daemon's own event loop (the main thread's), started by
hand (initialize, start, updater.start_polling) rather than by run_polling, so
that the loop, the scheduler and X posting run whether Telegram answers or
not: `BotApp.run` connects in the background with backoff (buzzbotd.retry),
marks the part "telegram" degraded in ops.health while it cannot, and a
token that Telegram refuses (401) stops only the bot, retried every
TOKEN_RETRY_S.

BotApp is the Application and what every part of the bot shares (settings,
database owner, price, clock, the replies); the commands (commands.py) and
the reminder round (delivery.py) are objects of their own, registered on it.

Job threads hand coroutines to this loop with run_coroutine_threadsafe
(`BotApp.run_in_loop`), never to a second event loop: the reminder
dispatch round (delivery.py) runs in a scheduler worker and sends each page
of due reminders here, concurrently, within the limits (ratelimit.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any, TypeVar

from telegram import Update
from telegram.error import (
    Conflict,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.ext import (
    Application,
    ApplicationBuilder,
    ContextTypes,
)
from telegram.request import HTTPXRequest

from buzzbotd import retry
from buzzbotd.clock import utc_now
from buzzbotd.config import Settings
from buzzbotd.db import DatabaseOwner, meta
from buzzbotd.ops import status
from buzzbotd.ops.health import HEALTH, Health
from buzzbotd.ops.metrics import METRICS
from buzzbotd.price import Quote
from buzzbotd.runtime import tls
from buzzbotd.runtime.text import shorten
from buzzbotd.runtime.throttle import KeyedThrottle
from buzzbotd.telegram import menu
from buzzbotd.telegram.ratelimit import ChatRateLimiter
from buzzbotd.telegram.replies import TELEGRAM_TEXT_MAX, Replies

log = logging.getLogger("buzzbotd.telegram")

# httpcore asks `import sniffio` several times per async request to learn which
# event loop runs it; sniffio is not installed (anyio 4 does not need it), so each
# ask searched sys.path on disk and failed: 57 µs a call here (more on an SD
# card), 2 µs once marked absent. httpcore then assumes asyncio, which runs here.
sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]
T = TypeVar("T")

POLLING_ERROR_LOG_EVERY_S = 60.0   # a stream of the same polling error is logged once a minute
PRICE_MAX_AGE_S = 60           # one price fetch a minute serves every /price and reminder
# getUpdates waits up to this long for a message (Telegram allows 50 s). Replies are
# as quick either way; an idle bot makes one request in 50 s instead of 10 s.
POLL_TIMEOUT_S = 50
# The updates the bot asks Telegram for: messages (commands) and changes of its own
# membership in a chat (a user who blocks the bot: status "kicked").
ALLOWED_UPDATES = ["message", "my_chat_member", "inline_query"]   # inline: @bot in a chat
CONNECT_FIRST_S = 1.0          # Telegram unreachable: retried after 1, 2, 4 … s (each
CONNECT_MAX_S = 30.0           # half at random, buzzbotd.retry), at most this far apart
# Updates received and not yet handled: past this, polling waits (Telegram keeps the
# rest). 16 are handled at once; a flood of commands costs at most this much memory.
UPDATE_BACKLOG = 256
TOKEN_RETRY_S = 600.0          # a token Telegram refuses (401) is tried again this often
PART = "telegram"              # its name in ops.health and STATUS=

class _ReportedByUs(logging.Filter):
    """Drops python-telegram-bot's traceback for errors the bot reports itself in one
    line: an invalid token (naming telegram.token) and a 429 that outlasted
    the retries (the reminder is retried next minute)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, InvalidToken | RetryAfter)


# Loggers python-telegram-bot raises those from (logger filters do not inherit).
_PTB_LOGGERS = ("telegram.ext", "telegram.ext.AIORateLimiter", "telegram.ext.Updater")


class UpdateBacklog(asyncio.Queue):
    """python-telegram-bot's update queue, bounded by the updates not yet handled
    (PTB starts a task for each update it takes from the queue, at once; the queue
    learns each one's end by task_done): polling puts the next update only when
    fewer than `limit` are being handled or waiting."""

    def __init__(self, limit: int = UPDATE_BACKLOG) -> None:
        super().__init__()
        self._room = asyncio.Semaphore(limit)

    async def put(self, item: object) -> None:
        await self._room.acquire()
        self.put_nowait(item)

    def task_done(self) -> None:
        super().task_done()
        self._room.release()


class BotApp:
    """Connects, polls and stops the bot; the loop bridge; the error handler; what
    the commands and the reminder round share."""

    def __init__(self, settings: Settings, owner: DatabaseOwner, prices: Any,
                 clock: Callable[[], datetime] = utc_now,
                 limiter: ChatRateLimiter | None = None,
                 on_state_change: Callable[[], Awaitable[None]] | None = None,
                 on_connected: Callable[[], object] | None = None) -> None:
        self.settings = settings
        self.owner = owner
        self.prices = prices             # the shared price client: /price and reminders
        self.clock = clock
        self.loop: asyncio.AbstractEventLoop | None = None
        # Refreshes systemd's STATUS= after /pause, /resume or a 409.
        self.on_state_change = on_state_change
        # A reminder round at once when connected (reminders wait until then).
        self.on_connected = on_connected
        self._logged = KeyedThrottle(POLLING_ERROR_LOG_EVERY_S)
        self.connected = False         # initialised and polling; reminders wait until then
        for name in _PTB_LOGGERS:
            logging.getLogger(name).addFilter(_ReportedByUs())
        t = settings.telegram
        self.limiter = limiter or ChatRateLimiter()
        self.replies = Replies(self.limiter)
        self.application = (
            ApplicationBuilder()
            .token(t.token.reveal())
            .base_url(f"{t.api_base}/bot")
            .base_file_url(f"{t.api_base}/file/bot")
            .rate_limiter(self.limiter)
            # PTB's defaults (256 connections; 1 for getUpdates), sharing one TLS context.
            .request(HTTPXRequest(connection_pool_size=256,
                                  httpx_kwargs={"verify": tls.context()}))
            .get_updates_request(HTTPXRequest(connection_pool_size=1,
                                              httpx_kwargs={"verify": tls.context()}))
            .concurrent_updates(16)    # a slow /tweet or /price never holds up other users
            .update_queue(UpdateBacklog())
            .post_init(self._post_init)
            .build()
        )
        self.application.add_error_handler(self.on_error)

    # -- life cycle ----------------------------------------------------------

    async def run(self, health: Health) -> None:
        """Connects and polls until cancelled (by stop()): in the background, with
        backoff, never raising. Runs as a task in the daemon's loop."""
        self.loop = asyncio.get_running_loop()
        failed = 0                              # connection attempts failed in a row
        while True:
            wait = await self._connect(health)
            if wait is None:                   # polling; returns when polling ended
                failed = 0
                wait = await self._poll_until_it_ends(health)
            elif isinstance(wait, TelegramError):
                failed += 1
                asked = (retry.retry_after_s(_seconds(wait.retry_after))
                         if isinstance(wait, RetryAfter) else None)
                wait = retry.wait_s(failed, CONNECT_FIRST_S, CONNECT_MAX_S, asked)
            await asyncio.sleep(wait)

    async def _connect(self, health: Health) -> float | TelegramError | None:
        """initialize (getMe) and start polling: None once polling, else how long to
        wait before the next try, or the error to back off from."""
        app = self.application
        try:
            await app.initialize()
            await self._post_init(app)
            await app.start()
            await app.updater.start_polling(  # type: ignore[union-attr]
                allowed_updates=ALLOWED_UPDATES, timeout=POLL_TIMEOUT_S,
                error_callback=self._polling_error)
        except InvalidToken:
            await self._reset()
            self._token_refused(health)
            return TOKEN_RETRY_S
        except TelegramError as e:
            await self._reset()
            reason = f"cannot reach Telegram at {self.settings.telegram.api_base} ({e})"
            if PART not in health.degraded() or self.due_to_log("connect"):
                log.warning("%s; retrying in the background", reason)
            health.degrade(PART, reason)
            return e
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

    async def stop(self, runner: asyncio.Task | None) -> None:
        """In the loop, at shutdown (after the reminder round's own stop): polling
        stops. The caller bounds the whole with a timeout."""
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        await self.replies.stop()
        await self._reset()

    def run_in_loop(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None
                    ) -> T:
        """From a job thread: runs `coroutine` in the bot's loop and waits for its result."""
        assert self.loop is not None, "bot loop not started"
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def post_to_channel(self, channel: str, text: str, timeout_s: float) -> int:
        """From a posting thread (posting/channel.py): `text` to the channel through
        the bot's rate limits; the message's id. BotNotRunning if nothing was sent."""
        from buzzbotd.posting.channel import BotNotRunning
        if self.loop is None or not self.loop.is_running():
            raise BotNotRunning("its loop has not started")

        async def send() -> int:
            return (await self.application.bot.send_message(channel, text)).message_id
        return self.run_in_loop(send(), timeout_s)

    async def _post_init(self, application: Application) -> None:
        await menu.publish(application.bot, self.settings.telegram.admin_ids)

    async def publish_admin_menu(self, admin_id: int) -> None:
        await menu.publish_admin(self.application.bot, admin_id)

    async def send_alert(self, chat_id: int, text: str) -> None:
        """An alert to an admin (ops/alerts.py), through the same rate limits."""
        await self.application.bot.send_message(chat_id, shorten(text, TELEGRAM_TEXT_MAX))

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        error = context.error
        if isinstance(error, Conflict):
            METRICS.inc("telegram_409_total")
            HEALTH.problem("telegram", "409 Conflict: another bot instance polls this token",
                           ttl_s=status.CONFLICT_SHOWN_FOR.total_seconds())
            if self.due_to_log("conflict"):
                log.error("409 Conflict from Telegram: another bot instance is polling this "
                          "token somewhere else; stop it (this one keeps retrying)")
                await self.owner.run(meta.put_time, meta.TELEGRAM_CONFLICT, self.clock())
                await self.state_changed()
            return
        if update is None and isinstance(error, NetworkError):
            if self.due_to_log("network"):
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
            self.replies.post(update.effective_message, "error",
                              "Sorry, something went wrong on my side. Please try again later.")

    # -- what the parts share ----------------------------------------------------

    def quote(self) -> Quote:
        """The price for /price and reminders (in a worker thread: it may fetch)."""
        return self.prices.latest(PRICE_MAX_AGE_S)

    async def state_changed(self) -> None:
        if self.on_state_change is not None:
            await self.on_state_change()

    def due_to_log(self, kind: str) -> bool:
        """At most one log line per kind of lasting error per POLLING_ERROR_LOG_EVERY_S."""
        return self._logged.allow(kind)


def _seconds(value: int | timedelta) -> float:
    """RetryAfter.retry_after: seconds, or a timedelta (PTB_TIMEDELTA set)."""
    return value.total_seconds() if isinstance(value, timedelta) else float(value)
