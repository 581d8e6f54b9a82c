"""The bot's commands: one handler per command, each thin: parse the message,
call the domain (reminders, db.meta, ops.alerts, the poster), reply.

Commands (SPEC "Telegram bot"): /start, /help, /price, /remind, /reminders,
/unremind for anyone; /status, /tweet, /pause, /resume, /alerts for
telegram.admin_ids. A user who blocks the bot (a `my_chat_member` update with
status kicked) has their reminders switched off; in groups, /cmd@otherbot is
not ours.

Commands are registered on the bot's Application (BotApp) and own what only
they use (the shared /price fetch); replies go through BotApp.replies, so a
handler never waits for its chat's turn. The owner of a reminder is who sent
the command: the user, or the chat in `sender_chat` when an anonymous group
admin or a channel sent it (Telegram shows all of those as one shared user).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

from telegram import ChatMember, Update
from telegram.constants import ChatID
from telegram.ext import (
    ChatMemberHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)

from buzzbotd import reminders, timeofday
from buzzbotd.db import meta
from buzzbotd.ops import status
from buzzbotd.price import PriceUnavailable, Quote
from buzzbotd.pricealerts import store
from buzzbotd.telegram.app import BotApp
from buzzbotd.telegram.texts import ADMIN_HELP, HELP, every, price_reply, stale_price_text

log = logging.getLogger("buzzbotd.telegram")

# The users Telegram puts in `from` when the real sender is a chat (`sender_chat`):
# every anonymous group admin, and every "send as channel". Never an admin here.
SHARED_SENDERS = frozenset({ChatID.ANONYMOUS_ADMIN, ChatID.FAKE_CHANNEL})


class Commands:
    """The update handlers, registered on `app`'s Application."""

    def __init__(self, app: BotApp, poster: Any, report: Callable[[], dict[str, Any]]
                 ) -> None:
        self.app = app
        self.owner, self.settings, self.clock = app.owner, app.settings, app.clock
        self.poster, self.report = poster, report       # what /tweet and /status call
        self._price_task: asyncio.Future[Quote] | None = None
        # The daemon sends admins its alerts (telegram.alert_admins): /alerts says so.
        self.alerts_enabled = bool(self.settings.telegram.alert_admins
                                   and self.settings.telegram.admin_ids)
        add = app.application.add_handler
        add(TypeHandler(Update, self._touch), group=-1)
        add(ChatMemberHandler(self.on_my_chat_member, ChatMemberHandler.MY_CHAT_MEMBER))
        add(CommandHandler(["start", "help"], self.cmd_help))
        add(CommandHandler("price", self.cmd_price))
        add(CommandHandler("remind", self.cmd_remind))
        add(CommandHandler("reminders", self.cmd_reminders))
        add(CommandHandler("unremind", self.cmd_unremind))
        add(CommandHandler("status", self.cmd_status))
        add(CommandHandler(["post", "tweet"], self.cmd_tweet))     # /tweet: /post's old name
        add(CommandHandler("pause", self.cmd_pause))
        add(CommandHandler("resume", self.cmd_resume))

    def add_fallbacks(self) -> None:
        """Last, after every other part's handlers: what no command handler took."""
        add = self.app.application.add_handler
        add(MessageHandler(filters.COMMAND, self.cmd_unknown))
        add(MessageHandler(filters.TEXT & filters.ChatType.PRIVATE, self.cmd_unknown))

    @staticmethod
    def owner_id(update: Update) -> int:
        return _owner_id(update)

    async def _touch(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Before every handler: record the sender (and re-enable their refused reminders).
        Only a message of theirs counts as writing to the bot: not a change of its
        membership, and not a command for another bot in a group."""
        if update.message is None or _for_another_bot(update, context.bot.username):
            return
        chat = update.effective_chat
        if update.effective_sender is not None and chat is not None:
            await self.owner.run(reminders.touch_user, _owner_id(update), chat.id, self.clock(),
                                 self.settings.telegram.default_timezone)

    def reply(self, update: Update, text: str, per_sender: bool = True,
               kind: str | None = None) -> None:
        """Answers the update when its chat's turn comes (BotApp.replies). Replies of one
        kind (the command, and the sender unless the answer is the same for anyone)
        that wait in a chat at once go as one message."""
        assert update.effective_message is not None
        kind = kind or _command(update) or "text"
        if per_sender:
            kind += f":{_owner_id(update)}"
        self.app.replies.post(update.effective_message, kind, text)

    async def cmd_help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        admin = self.is_admin(update)
        if admin and _command(update) == "start":
            await self.app.publish_admin_menu(_owner_id(update))
        self.reply(update, HELP + (ADMIN_HELP if admin else ""), per_sender=admin)

    async def cmd_price(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        currency = await self.currency_of(_owner_id(update))
        try:
            quote = await self.shared_quote()
        except PriceUnavailable as e:
            if e.last is not None:
                log.info("user %d: /price answered with the last good price (%s)",
                         _owner_id(update), e)
                self.reply(update, stale_price_text(e.last, self.clock(), currency),
                           per_sender=False, kind=f"price:{currency}")
                return
            log.warning("user %d: /price failed: %s", _owner_id(update), e)
            self.reply(update, "Sorry, I can't get the price right now. Please try again in "
                                "a minute.", per_sender=False)
            return
        self.reply(update, price_reply(quote, currency), per_sender=False,
                   kind=f"price:{currency}")

    async def currency_of(self, user_id: int) -> str:
        """The user's /currency (price.currencies[0] unless they chose another)."""
        currencies = self.settings.price.currencies
        return await self.owner.run(store.user_currency, user_id, currencies[0], currencies)

    async def shared_quote(self) -> Quote:
        """The price for /price: every /price asking at once waits for one worker thread
        (which itself shares a request with the reminders and the poster), so a crowd of
        /price during a slow price API does not fill the default executor."""
        if self._price_task is None or self._price_task.done():
            self._price_task = asyncio.ensure_future(asyncio.to_thread(self.app.quote))
        return await asyncio.shield(self._price_task)

    async def cmd_remind(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        try:
            request = reminders.parse_request(context.args or [])
        except reminders.InputError as e:
            self.reply(update, str(e))
            return
        assert update.effective_chat is not None
        result = await self.owner.run(reminders.set_reminder, _owner_id(update),
                                      update.effective_chat.id, request.at, request.timezone,
                                      self.clock(), self.settings.telegram.default_timezone,
                                      request.days)
        if result.reminder is None:
            self.reply(update, f"You already have {reminders.MAX_PER_USER} reminders, the "
                                "most I keep. /reminders lists them; /unremind HH:MM removes "
                                "one.")
            return
        r = result.reminder
        first = {"created": "Done! I'll remind you", "updated": "Changed: I'll remind you",
                 "unchanged": "You already have it: I'll remind you"}[result.outcome]
        self.reply(update, f"{first} {every(r.days)} at {r.local_time} ({r.timezone}), "
                           f"with the price. Next: {self._when(r)}.")

    async def cmd_reminders(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        views = await self.owner.run(reminders.user_reminders, _owner_id(update))
        if not views:
            self.reply(update, "You have no reminders. Set one with /remind 08:30 "
                                "(or /remind 08:30 Europe/Berlin).")
            return
        lines = [f"• {r.local_time} {r.timezone}"
                 + ("" if r.days == reminders.EVERY_DAY else f" {reminders.days_text(r.days)}")
                 + " – "
                 + (f"next {self._when(r)}" if r.enabled else
                    "off: Telegram would not deliver to that chat")
                 for r in views]
        self.reply(update, "Your reminders:\n" + "\n".join(lines))

    async def cmd_unremind(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        args = context.args or []
        try:
            if len(args) > 1:
                raise reminders.InputError("Use /unremind to remove all your reminders, or "
                                           "/unremind 08:30 to remove one.")
            at = reminders.parse_time(args[0]) if args else None
        except reminders.InputError as e:
            self.reply(update, str(e))
            return
        removed = await self.owner.run(reminders.remove_reminders, _owner_id(update), at)
        if removed:
            self.reply(update, f"Removed {removed} reminder{'s' if removed != 1 else ''}.")
        elif at is not None:
            self.reply(update, f"You have no reminder at {at:%H:%M}. /reminders lists yours.")
        else:
            self.reply(update, "You had no reminders.")

    async def cmd_status(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if self.refused(update):
            return
        report = await self.owner.run(self.report)
        self.reply(update, status.render(report, os.getpid()))

    async def cmd_tweet(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if self.refused(update):
            return
        if self.poster is None:
            self.reply(update, "Posting is off (no network is enabled), so there is nothing "
                                "to post.")
            return
        # Keyed by the update: the same update delivered again (a restart before
        # Telegram had our confirmation) gets these posts back, never a second one.
        assert update.effective_message is not None
        request = f"{timeofday.slot_key(update.effective_message.date)}-u{update.update_id}"
        rows = await asyncio.to_thread(self.poster.post_now, request)
        log.info("admin %d: /%s %s: %s", _owner_id(update), _command(update),
                 rows[0].slot_key if rows else "-", rows[0].state if len(rows) == 1 else
                 ", ".join(f"{row.network} {row.state}" for row in rows))
        if len(rows) == 1 and rows[0].network == "x":      # X alone: as /tweet always said
            post = rows[0]
            if post.state == "posted":
                self.reply(update, f"Posted (tweet {post.tweet_id}):\n{post.text}")
            else:
                self.reply(update, f"Not posted ({post.state}): "
                                    f"{post.reason or 'no reason given'}")
            return
        lines = [f"{row.network}: posted {row.url or row.tweet_id or ''}".rstrip()
                 if row.state == "posted" else
                 f"{row.network}: not posted ({row.state}): {row.reason or 'no reason given'}"
                 for row in rows]
        text = next((row.text for row in rows if row.text), "")
        self.reply(update, "\n".join(lines) + (f"\n\n{text}" if text else ""))

    async def cmd_pause(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._set_paused(update, True)

    async def cmd_resume(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._set_paused(update, False)

    async def _set_paused(self, update: Update, paused: bool) -> None:
        if self.refused(update):
            return
        await self.owner.run(meta.set_paused, paused, self.clock())
        await self.app.state_changed()
        log.info("admin %d: scheduled posting %s", _owner_id(update),
                 "paused" if paused else "resumed")
        text = ("Scheduled tweets paused; slots that pass meanwhile are skipped. /resume to "
                "restart." if paused else "Scheduled tweets resumed.")
        if not self.settings.x.enabled:
            text += " (X posting is off in the configuration anyway.)"
        self.reply(update, text)

    async def on_my_chat_member(self, update: Update,
                                context: ContextTypes.DEFAULT_TYPE) -> None:
        """The bot's membership changed: a user who blocked it ("kicked" in their private
        chat), or a group that removed it, gets no more reminders, at once."""
        change = update.my_chat_member
        assert change is not None
        status = change.new_chat_member.status
        if status not in (ChatMember.BANNED, ChatMember.LEFT):
            return
        count = await self.owner.run(reminders.disable_chat, change.chat.id, self.clock())
        log.warning("user %d: the bot was %s from chat %d; %d reminder(s) disabled until "
                    "they write to the bot again", change.from_user.id,
                    "blocked" if status == ChatMember.BANNED else "removed", change.chat.id,
                    count)

    async def cmd_unknown(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if _for_another_bot(update, context.bot.username):
            # In a group, /price@otherbot is another bot's business: no reply.
            log.debug("chat %d: %s is for another bot; ignored", update.effective_chat.id
                      if update.effective_chat else 0, _command_word(update))
            return
        command = _command(update)
        head = f"I don't know /{command}." if command else "I only understand commands."
        self.reply(update, f"{head} /help lists what I can do.", per_sender=False,
                    kind="unknown")

    def is_admin(self, update: Update) -> bool:
        """One of telegram.admin_ids, writing as themselves: never a message sent as a
        chat (an anonymous group admin, a channel), whose `from` is shared by all."""
        message = update.effective_message
        user = update.effective_user
        return (user is not None and user.id not in SHARED_SENDERS
                and (message is None or message.sender_chat is None)
                and user.id in self.settings.telegram.admin_ids)

    def refused(self, update: Update) -> bool:
        """True (after a polite refusal) if the sender is not an admin."""
        if self.is_admin(update):
            return False
        log.warning("user %d is not an admin and tried /%s; refused", _owner_id(update),
                    _command(update))
        self.reply(update, "Sorry, that command is for the bot's operators only. "
                            "/help lists what you can do.")
        return True

    def _when(self, reminder: reminders.ReminderView) -> str:
        local = reminder.next_due_at.astimezone(reminders.zone(reminder.timezone))
        minutes = max(round((reminder.next_due_at - self.clock()).total_seconds() / 60), 0)
        hours, minutes = divmod(minutes, 60)
        return f"{local:%a %d %b %H:%M} (in {f'{hours}h ' if hours else ''}{minutes}min)"


def _owner_id(update: Update) -> int:
    """Who sent it: the user, or the chat they sent it as (`sender_chat`: an anonymous
    group admin, a channel), which then owns the reminders set by it."""
    sender = update.effective_sender
    assert sender is not None
    return sender.id


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

