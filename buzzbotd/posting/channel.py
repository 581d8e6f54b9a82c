"""A Telegram channel as a network: the bot posts each slot's text there.

The bot sends through its own loop and rate limiter (`send`, given by the
telegram package: it hands the coroutine to the bot's loop with
run_coroutine_threadsafe, as the reminders do). A bot cannot read a channel's
history, so an outcome that is not known (no answer, a timeout) cannot be
settled: the channel gets at most one message per slot, and such a slot is
recorded `unknown`, never retried (`settles = False`, driver.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import httpx

from buzzbotd.clock import Clock, utc_now
from buzzbotd.posting.outcome import (
    Failed,
    NotSent,
    Outcome,
    Posted,
    Unknown,
    not_before,
    transport_outcome,
)

NETWORK = "channel"
CHANNEL_KEY = "telegram.channel"
SEND_TIMEOUT_S = 60.0     # the limiter may hold a message for the channel's turn first
# Telegram's words for a channel the bot cannot post to (Bot API error descriptions).
_NOT_THERE = ("chat not found", "not a member", "not enough rights", "need administrator rights",
              "bot was kicked", "chat_write_forbidden")


class BotNotRunning(Exception):
    """The bot's loop is not running (yet): nothing was sent."""


class ChannelClient:
    network = NETWORK
    settles = False

    def __init__(self, channel: str, send: Callable[[str, str, float], int],
                 clock: Clock = utc_now) -> None:
        self.channel = channel
        self.send = send          # (channel, text, timeout_s) → the message's id
        self.clock = clock

    def post(self, key: str, text: str) -> Outcome:
        from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, RetryAfter

        try:
            message_id = self.send(self.channel, text, SEND_TIMEOUT_S)
        except BotNotRunning as e:
            return NotSent(f"the bot is not running: {e}")
        except RetryAfter as e:
            wait = e.retry_after
            seconds = wait.total_seconds() if hasattr(wait, "total_seconds") else float(wait)
            return NotSent(f"Telegram's flood control: retry after {seconds:g}s",
                           not_before(seconds, self.clock()))
        except InvalidToken as e:
            return Failed(f"Telegram refused the bot's token: {e.message}", "telegram.token")
        except (BadRequest, Forbidden) as e:
            said = e.message
            if any(words in said.lower() for words in _NOT_THERE):
                return Failed(f"Telegram cannot post to {self.channel}: {said} (add the bot to "
                              "the channel as an administrator)", CHANNEL_KEY)
            return Failed(f"Telegram refused the message for {self.channel}: {said}",
                          CHANNEL_KEY)
        except NetworkError as e:       # TimedOut too
            cause = e.__cause__
            if isinstance(cause, httpx.TransportError):
                return transport_outcome(cause, "Telegram")
            return Unknown(f"no answer from Telegram: {e.message}")
        except TimeoutError:
            return Unknown(f"no answer from Telegram within {SEND_TIMEOUT_S:g}s")
        return Posted(str(message_id), _link(self.channel, message_id), "created")

    def settle(self, key: str, text: str, first_sent_at: datetime) -> Outcome:
        return Unknown("a bot cannot read a channel's history")

    def close(self) -> None:
        pass


def _link(channel: str, message_id: int) -> str:
    """t.me/<name>/<id> for a public channel, t.me/c/<id>/<id> (members only) for an id."""
    if channel.startswith("@"):
        return f"https://t.me/{channel[1:]}/{message_id}"
    internal = channel.removeprefix("-100") if channel.startswith("-100") else channel.lstrip("-")
    return f"https://t.me/c/{internal}/{message_id}"
