"""ChatRateLimiter: every message the bot sends (replies, reminders, alerts) goes
through it: at most MESSAGES_PER_S for the whole bot, one message a second per
chat and GROUP_MESSAGES a minute per group; a 429's retry_after is waited out and
the request retried, RETRY_AFTER_RETRIES times (SPEC "Telegram's real behaviour").
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from telegram.error import (
    RetryAfter,
)
from telegram.ext import (
    AIORateLimiter,
)

from buzzbotd.metrics import METRICS

# Telegram allows about 30 messages a second in all. We stay a little under it:
# a 429 costs every chat a pause of retry_after, so the margin pays for itself.
MESSAGES_PER_S = 28
CHAT_INTERVAL_S = 1.0          # at most one message a second in any one chat
GROUP_MESSAGES = 20            # Telegram: at most 20 messages a minute in one group
GROUP_PERIOD_S = 60.0
RETRY_AFTER_RETRIES = 3        # 429s waited out per message before giving up for this round


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
