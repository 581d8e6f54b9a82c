"""The Telegram bot: python-telegram-bot's Application in the main thread.

Job threads hand coroutines to this loop with run_coroutine_threadsafe
(`TelegramBot.run_in_loop`), never to a second event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from typing import Any

from telegram import Update
from telegram.error import Conflict, InvalidToken
from telegram.ext import Application, ApplicationBuilder, CommandHandler, ContextTypes

from buzzbotd import state
from buzzbotd.config import ConfigError, Settings
from buzzbotd.db import DatabaseOwner
from buzzbotd.scheduler import utc_now

log = logging.getLogger("buzzbotd.telegram")
CONFLICT_LOG_EVERY_S = 60.0


class _Application(Application):
    """An Application that tells the daemon when it has started (polling included)."""

    on_started: Callable[[], Awaitable[None]] | None = None

    async def start(self) -> None:
        await super().start()
        if self.on_started is not None:
            await self.on_started()


class TelegramBot:
    def __init__(self, settings: Settings, owner: DatabaseOwner, prices: Any, poster: Any,
                 report: Callable[[], dict[str, Any]],
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.settings = settings
        self.owner = owner
        self.prices = prices
        self.poster = poster
        self.report = report
        self.clock = clock
        self.loop: asyncio.AbstractEventLoop | None = None
        self._last_conflict_log = 0.0
        t = settings.telegram
        self.application = (
            ApplicationBuilder()
            .application_class(_Application)
            .token(t.token.reveal())
            .base_url(f"{t.api_base}/bot")
            .base_file_url(f"{t.api_base}/file/bot")
            .build()
        )
        self.application.add_handler(CommandHandler(["start", "help"], self.cmd_help))
        self.application.add_error_handler(self.on_error)

    # -- life cycle ----------------------------------------------------------

    def run(self, on_started: Callable[[], Awaitable[None]]) -> None:
        """Runs the bot in this (the main) thread until stop_running()."""
        self.application.on_started = on_started
        try:
            self.application.run_polling(stop_signals=None, allowed_updates=["message"],
                                         close_loop=False)
        except InvalidToken:
            raise ConfigError([f"{self.settings.path}: telegram.token: refused by "
                               f"{self.settings.telegram.api_base} (401 Unauthorized); "
                               "expected the token @BotFather gave you"]) from None

    def stop_running(self) -> None:
        self.application.stop_running()

    def attach_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def run_in_loop(self, coroutine: Coroutine[Any, Any, Any], timeout: float | None = None
                    ) -> Any:
        """From a job thread: runs `coroutine` in the bot's loop and waits for its result."""
        assert self.loop is not None, "bot loop not started"
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    # -- jobs ----------------------------------------------------------------

    def dispatch_reminders(self) -> None:
        """Sends the reminders that are due (scheduler job, in a worker thread)."""

    # -- commands --------------------------------------------------------------

    async def cmd_help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text(
            "I post the Bitcoin price to X and can remind you of it every day.")

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        error = context.error
        if isinstance(error, Conflict):
            now = time.monotonic()
            if now - self._last_conflict_log >= CONFLICT_LOG_EVERY_S:
                self._last_conflict_log = now
                log.error("409 Conflict from Telegram: another bot instance is polling this "
                          "token somewhere else; stop it (this one keeps retrying)")
                await asyncio.wrap_future(self.owner.submit(
                    state.put_time, state.TELEGRAM_CONFLICT, self.clock()))
            return
        log.error("error while handling %s", "polling" if update is None else "an update",
                  exc_info=error)
