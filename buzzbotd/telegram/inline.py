"""Inline mode: `@yourbot` typed in any chat answers the price in the user's
currency (SPEC "Telegram: … inline"). The operator turns it on once with
/setinline at @BotFather.

Every keystroke is an inline query; none of them fetches: the answer comes
from the shared price client's quote of at most PRICE_MAX_AGE_S (a minute),
and Telegram itself caches the answer for CACHE_S per user.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from telegram import InlineQueryResultArticle, InputTextMessageContent, Update
from telegram.error import TelegramError
from telegram.ext import ContextTypes, InlineQueryHandler

from buzzbotd.price import PriceUnavailable
from buzzbotd.telegram.app import BotApp
from buzzbotd.telegram.texts import price_reply, price_text, stale_price_text

if TYPE_CHECKING:
    from buzzbotd.telegram.commands import Commands

log = logging.getLogger("buzzbotd.telegram")
CACHE_S = 30            # Telegram keeps our answer this long for the same query and user


class InlineAnswers:
    def __init__(self, app: BotApp, commands: Commands) -> None:
        self.app, self.commands = app, commands
        app.application.add_handler(InlineQueryHandler(self.on_inline_query))

    async def on_inline_query(self, update: Update,
                              context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.inline_query
        assert query is not None
        currency = await self.commands.currency_of(query.from_user.id)
        try:
            quote = await self.commands.shared_quote()
            title, text = price_text(quote, currency), price_reply(quote, currency)
        except PriceUnavailable as e:
            if e.last is None:
                title = text = "I can't get the Bitcoin price right now; try again in a minute."
            else:
                text = stale_price_text(e.last, self.app.clock(), currency)
                title = text.split(";")[0]
        result = InlineQueryResultArticle(
            id=f"price-{currency}", title=title, description="Send the Bitcoin price",
            input_message_content=InputTextMessageContent(text))
        try:
            await query.answer([result], cache_time=CACHE_S, is_personal=True)
        except TelegramError as e:      # too late (the user typed on), or gone
            log.info("user %d: inline answer not taken: %s", query.from_user.id, e)
