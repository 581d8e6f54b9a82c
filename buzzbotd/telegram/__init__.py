"""The Telegram bot (python-telegram-bot), one module per concern:

- app.py: the life cycle (connect in the background, poll, stop), the bridge
  from job threads into the bot's loop (`run_in_loop`), the error handler;
- commands.py: one handler per command (parse → call the domain → reply);
- menu.py: the command menu Telegram shows under "/" (admins see more);
- delivery.py: the reminder send round and what each Telegram answer means
  for a reminder (sent / retry / blocked / migrated / given up);
- ratelimit.py: ChatRateLimiter, the limits every message goes through;
- texts.py: how a price is worded.

`TelegramBot` is all of it in one object, as the daemon builds it.
"""

from __future__ import annotations

from buzzbotd.telegram.commands import Commands
from buzzbotd.telegram.delivery import Delivery
from buzzbotd.telegram.ratelimit import ChatRateLimiter

__all__ = ["ChatRateLimiter", "TelegramBot"]


class TelegramBot(Commands, Delivery):
    """The bot: BotApp's life cycle, with the commands and the reminder round."""
