"""The command menu Telegram shows under "/": the public commands for everyone,
and in each admin's own chat the admin commands too (setMyCommands)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from telegram import Bot, BotCommand, BotCommandScopeChat
from telegram.error import TelegramError

log = logging.getLogger("buzzbotd.telegram")

PUBLIC_COMMANDS = [
    BotCommand("price", "the Bitcoin price now"),
    BotCommand("remind", "daily reminder, e.g. /remind 08:30 Europe/Berlin"),
    BotCommand("reminders", "your reminders"),
    BotCommand("unremind", "remove your reminders"),
    BotCommand("alert", "price alert, e.g. /alert above 100000"),
    BotCommand("alerts", "your price alerts"),
    BotCommand("unalert", "remove a price alert: /unalert 1"),
    BotCommand("currency", "your currency, e.g. /currency eur"),
    BotCommand("help", "what I can do"),
]
ADMIN_COMMANDS = [
    BotCommand("status", "health, posts and counts"),
    BotCommand("post", "post the price now to every network"),
    BotCommand("pause", "pause scheduled tweets"),
    BotCommand("resume", "resume scheduled tweets"),
    BotCommand("mute", "stop the daemon's alerts to you"),
    BotCommand("unmute", "get the daemon's alerts again"),
]


async def publish(bot: Bot, admin_ids: Iterable[int]) -> None:
    """Publishes the menu; the admins' own chats also list their commands."""
    try:
        await bot.set_my_commands(PUBLIC_COMMANDS)
    except TelegramError as e:
        log.warning("could not publish the command menu (setMyCommands): %s", e)
    for admin_id in sorted(admin_ids):
        await publish_admin(bot, admin_id)


async def publish_admin(bot: Bot, admin_id: int) -> None:
    try:
        await bot.set_my_commands(PUBLIC_COMMANDS + ADMIN_COMMANDS,
                                  scope=BotCommandScopeChat(admin_id))
    except TelegramError as e:
        # Normal until the admin has written to the bot once; /start retries.
        log.info("admin command menu for user %d not set yet: %s", admin_id, e)
