"""Price alerts in the bot: /alert, /alerts, /unalert, /currency, the admins'
/mute and /unmute, and the check job that sends each crossing's message.

The check (`check_alerts`, a scheduler job every telegram.alert_check_s, in a
worker thread) takes the price from the shared client (one fetch serves every
alert, /price and the reminders), lets buzzbotd.pricealerts.crossing record
every crossing in the outbox, then sends what the outbox holds through the
same rate limiter as everything else: each chat its own sender waiting for its
turn, so one chat's many alerts never hold up another's. An outbox row is
settled once Telegram answered: sent, blocked (the chat's alerts switched
off), or failed (a 400: given up). A network error or a 429 leaves it for the
next check; a crash between Telegram's answer and the record sends it again at
the next start (as a reminder: at-least-once for that one answer's window).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import TYPE_CHECKING

from telegram import Update
from telegram.error import BadRequest, ChatMigrated, Forbidden, TelegramError
from telegram.ext import CommandHandler, ContextTypes

from buzzbotd.ops import alerts
from buzzbotd.price import PriceError
from buzzbotd.price.quote import money
from buzzbotd.pricealerts import crossing, store
from buzzbotd.pricealerts.request import FORMS, parse_request
from buzzbotd.telegram.app import BotApp
from buzzbotd.timeinput import InputError

if TYPE_CHECKING:
    from buzzbotd.telegram.commands import Commands

log = logging.getLogger("buzzbotd.telegram")
PENDING_PAGE = 500             # crossings sent per check; the rest wait for the next


class PriceAlerting:
    """The alert commands, registered on `app`'s Application beside `commands`
    (whose reply, owner and admin rules they share), and the check job."""

    def __init__(self, app: BotApp, commands: Commands) -> None:
        self.app, self.commands = app, commands
        self.owner, self.settings, self.clock = app.owner, app.settings, app.clock
        self.currencies: tuple[str, ...] = self.settings.price.currencies
        self._sending: asyncio.Task | None = None
        add = app.application.add_handler
        add(CommandHandler("alert", self.cmd_alert))
        add(CommandHandler("alerts", self.cmd_alerts))
        add(CommandHandler("unalert", self.cmd_unalert))
        add(CommandHandler("currency", self.cmd_currency))
        add(CommandHandler(["mute", "unmute"], self.cmd_mute))

    # -- commands ------------------------------------------------------------------

    async def cmd_alert(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        reply, owner_id = self.commands.reply, self.commands.owner_id(update)
        try:
            request = parse_request(context.args or [], self.currencies)
        except InputError as e:
            reply(update, str(e))
            return
        currency = request.currency or await self.commands.currency_of(owner_id)
        try:
            quote = await self.commands.shared_quote()
        except PriceError:
            reply(update, "I can't get the price right now to set that alert against; "
                          "please try again in a minute.")
            return
        price, _ = quote.price_in(currency)
        assert update.effective_chat is not None
        result = await self.owner.run(store.add_alert, owner_id, update.effective_chat.id,
                                      request, currency, price, self.clock())
        if result.outcome == "full":
            reply(update, f"You have {store.MAX_PER_OWNER} alerts, the most I keep. /alerts "
                          "lists them; /unalert N removes one.")
        elif result.outcome == "reached":
            side = "above" if request.kind == "above" else "below"
            reply(update, f"Bitcoin is at {money(price, currency)} already, {side} "
                          f"{money(request.level, currency)}: an alert {request.kind} fires "
                          f"when the price gets there. Pick a level {side} the price.")
        else:
            assert result.alert is not None
            reply(update, f"Done: alert {result.alert.number}, {_describe(result.alert)}. "
                          f"Bitcoin is at {money(price, currency)} now. /alerts lists yours.")

    async def cmd_alerts(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        args = [a.lower() for a in context.args or []]
        if args in (["on"], ["off"]):
            await self._mute(update, args == ["off"])
            return
        if args:
            reply_text = "/alerts lists your price alerts."
            if self.commands.is_admin(update):
                reply_text += " /alerts off or /alerts on mutes or unmutes my alerts to you."
            self.commands.reply(update, reply_text)
            return
        views = await self.owner.run(store.owner_alerts, self.commands.owner_id(update))
        if not views:
            self.commands.reply(update, f"You have no price alerts. Set one: {FORMS}")
            return
        lines = [f"{v.number}. {_describe(v)}" for v in views]
        self.commands.reply(update, "Your price alerts:\n" + "\n".join(lines)
                            + "\n/unalert N removes one, /unalert all removes them all.")

    async def cmd_unalert(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        args = [a.lower() for a in context.args or []]
        usage = "Use /unalert N (its number in /alerts) or /unalert all."
        if len(args) != 1 or not (args[0] == "all" or args[0].isdigit()):
            self.commands.reply(update, usage)
            return
        number = None if args[0] == "all" else int(args[0])
        removed = await self.owner.run(store.remove_alerts, self.commands.owner_id(update),
                                       number)
        if removed:
            self.commands.reply(update, f"Removed {removed} alert{'s' if removed != 1 else ''}.")
        else:
            self.commands.reply(update, ("You have no alert " + args[0] + ". " if number
                                         else "You had no alerts. ") + "/alerts lists yours.")

    async def cmd_currency(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        args = [a.lower() for a in context.args or []]
        choices = ", ".join(self.currencies)
        owner_id = self.commands.owner_id(update)
        if not args:
            code = await self.commands.currency_of(owner_id)
            self.commands.reply(update, f"Your currency is {code.upper()}. Change it with "
                                        f"/currency CODE, one of: {choices}.")
            return
        if len(args) != 1 or args[0] not in self.currencies:
            self.commands.reply(update, f'"{" ".join(args)[:20]}" is not one of the currencies '
                                        f"I have: {choices}. Example: /currency "
                                        f"{self.currencies[-1]}")
            return
        assert update.effective_chat is not None
        await self.owner.run(store.set_user_currency, owner_id, update.effective_chat.id,
                             args[0], self.clock(), self.settings.telegram.default_timezone)
        self.commands.reply(update, f"Done: /price, your reminders and new alerts are in "
                                    f"{args[0].upper()} now.")

    async def cmd_mute(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._mute(update, update.effective_message is not None
                         and (update.effective_message.text or "").startswith("/mute"))

    async def _mute(self, update: Update, muted: bool) -> None:
        """The daemon's alerts to this admin off (muted) or on."""
        if self.commands.refused(update):
            return
        user = self.commands.owner_id(update)
        await self.owner.run(alerts.set_muted, user, muted)
        log.info("admin %d: alerts %s", user, "off" if muted else "on")
        text = ("Alerts off for you. /unmute (or /alerts on) to get them again." if muted else
                "Alerts on: I'll message you when something breaks, and when it's over.")
        if not self.commands.alerts_enabled:
            text += " (telegram.alert_admins is false in the configuration, so none are sent.)"
        self.commands.reply(update, text)

    # -- the check job ---------------------------------------------------------------

    def check_alerts(self) -> int:
        """Records the crossings of the price now and sends what is pending (scheduler
        job, in a worker thread); returns how many were recorded. With no alert
        waiting, no price is asked for."""
        crossed = 0
        codes = self.owner.call(crossing.watched, self.currencies)
        if codes:
            try:
                quote = self.app.quote()
            except PriceError as e:
                if self.app.due_to_log("alerts-price"):
                    log.warning("price alerts not checked: %s", e)
                codes = []
            for code in codes:
                crossed += self.owner.call(crossing.evaluate, code, quote.price_in(code)[0],
                                           self.clock())
        # Page after page, while a page gets anywhere (what failed waits for the next check).
        previous: list[int] = []
        while self.app.connected:
            pending = self.owner.call(crossing.pending, PENDING_PAGE)
            ids = [item.id for item in pending]
            if not ids or ids == previous:
                break
            self.app.run_in_loop(self._send(pending))
            previous = ids
        return crossed

    async def _send(self, pending: list[crossing.Crossing]) -> None:
        by_chat: dict[int, list[crossing.Crossing]] = defaultdict(list)
        for item in pending:
            by_chat[item.chat_id].append(item)
        await asyncio.gather(*(self._send_chat(chat, items) for chat, items in by_chat.items()))

    async def _send_chat(self, chat_id: int, items: list[crossing.Crossing]) -> None:
        for item in items:
            try:
                async with self.app.limiter.turn(chat_id) as turn:
                    await self.app.application.bot.send_message(
                        chat_id, crossing.message_text(item), rate_limit_args=turn)
            except Forbidden as e:
                count = await self.owner.run(store.disable_chat_alerts, chat_id)
                await self.owner.run(crossing.settle, item.id, "blocked", self.clock())
                log.warning("chat %d: Telegram refused alert %d (%s); %d alert(s) of the chat "
                            "switched off", chat_id, item.alert_id, e.message, count)
                return
            except (BadRequest, ChatMigrated) as e:
                await self.owner.run(crossing.settle, item.id, "failed", self.clock())
                log.error("chat %d: Telegram rejected alert %d (%s); given up", chat_id,
                          item.alert_id, e.message)
            except TelegramError as e:        # network, 429 past the limiter: next check
                log.warning("chat %d: alert %d not sent (%s); tried again at the next check",
                            chat_id, item.alert_id, e)
                return
            else:
                await self.owner.run(crossing.settle, item.id, "sent", self.clock())
                log.info("chat %d: alert %d sent (%s at %.2f)", chat_id, item.alert_id,
                         item.currency, item.price)


def _describe(view: store.AlertView) -> str:
    if view.kind == "move":
        what = f"a move of {view.level:g}% ({view.currency.upper()})"
    else:
        what = f"{view.kind} {money(view.level, view.currency)}"
        if view.repeat:
            what += ", repeating"
    if not view.enabled:
        return what + " – off: Telegram would not deliver to that chat"
    return what + (" – fired" if view.state == "fired" else "")
