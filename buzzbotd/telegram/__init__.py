"""The Telegram bot (python-telegram-bot), one module per concern:

- app.py: BotApp, the Application and its life cycle (connect in the
  background, poll, stop), the bridge from job threads into the bot's loop
  (`run_in_loop`), the error handler, and what the parts share;
- commands.py: Commands, one handler per command (parse → call the domain →
  reply), registered on the Application;
- replies.py: Replies, the answers waiting for their chats' turns;
- alerting.py: PriceAlerting, /alert, /alerts, /unalert, /currency, /mute and
  the job that sends each crossing of a price alert;
- inline.py: InlineAnswers, the price answered to `@bot` in any chat;
- menu.py: the command menu Telegram shows under "/" (admins see more);
- delivery.py: ReminderDelivery, the reminder send round and what each
  Telegram answer means for a reminder (sent / retry / blocked / migrated /
  given up);
- ratelimit.py: ChatRateLimiter, the limits every message goes through;
- texts.py: how a price is worded.

`TelegramBot` is the three composed, as the daemon builds it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from buzzbotd.clock import utc_now
from buzzbotd.config import Settings
from buzzbotd.db import DatabaseOwner
from buzzbotd.ops.health import Health
from buzzbotd.telegram.alerting import PriceAlerting
from buzzbotd.telegram.app import BotApp
from buzzbotd.telegram.commands import Commands
from buzzbotd.telegram.delivery import ReminderDelivery
from buzzbotd.telegram.inline import InlineAnswers
from buzzbotd.telegram.ratelimit import ChatRateLimiter

__all__ = ["ChatRateLimiter", "TelegramBot"]


class TelegramBot:
    """The bot: BotApp (the Application), with Commands registered on it and the
    ReminderDelivery sending through it."""

    def __init__(self, settings: Settings, owner: DatabaseOwner, prices: Any, poster: Any,
                 report: Callable[[], dict[str, Any]],
                 clock: Callable[[], datetime] = utc_now,
                 limiter: ChatRateLimiter | None = None,
                 on_state_change: Callable[[], Awaitable[None]] | None = None,
                 on_connected: Callable[[], object] | None = None) -> None:
        self.app = BotApp(settings, owner, prices, clock, limiter, on_state_change,
                          on_connected)
        self.commands = Commands(self.app, poster, report)
        self.alerting = PriceAlerting(self.app, self.commands)
        self.inline = InlineAnswers(self.app, self.commands)
        self.commands.add_fallbacks()
        self.delivery = ReminderDelivery(self.app)
        self.dispatch_reminders = self.delivery.dispatch_reminders
        self.check_alerts = self.alerting.check_alerts
        self.stop_sending = self.delivery.stop_sending
        self.send_alert = self.app.send_alert

    async def run(self, health: Health) -> None:
        """Connects and polls until cancelled (BotApp.run)."""
        await self.app.run(health)

    async def stop(self, runner: asyncio.Task | None) -> None:
        """In the loop, at shutdown: no new reminder is sent, those in flight get
        CLOSE_GRACE_S to finish (and be recorded), then polling stops. The caller
        bounds the whole with a timeout."""
        await self.delivery.finish_sending()
        await self.app.stop(runner)
