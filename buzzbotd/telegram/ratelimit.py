"""ChatRateLimiter: every message the bot sends (replies, reminders, alerts) goes
through it: at most MESSAGES_PER_S in any second for the whole bot, one message a
second per chat and GROUP_MESSAGES a minute per group; a 429's retry_after is waited
out and the request retried, RETRY_AFTER_RETRIES times (SPEC "Telegram's real
behaviour"). The three limits are one rule, "N answered in the last P seconds"
(AnsweredWindow), with three figures.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from telegram.error import (
    RetryAfter,
)
from telegram.ext import (
    AIORateLimiter,
)

from buzzbotd.ops.metrics import METRICS

# Telegram allows about 30 messages a second in all, and a 429 costs every chat a pause
# of retry_after. Counted as AnsweredWindow counts, network jitter cannot push 29 over.
MESSAGES_PER_S = 29
MIN_GAP_S = 1 / 40             # between two requests' starts: no burst of 29 at once
CHAT_INTERVAL_S = 1.0          # at most one message a second in any one chat
GROUP_MESSAGES = 20            # Telegram: at most 20 messages a minute in one group
GROUP_PERIOD_S = 60.0
RETRY_AFTER_RETRIES = 3        # 429s waited out per message before giving up for this round


class AnsweredWindow:
    """At most `places` requests in any `period_s` at Telegram's end, whatever the
    network's jitter, and no two starting within `min_gap_s` of each other.

    A request holds a place from its start until `period_s` after its answer:
    Telegram received it in between, so of any requests Telegram received within
    one period, the last to start found all the others still holding their places,
    and so there are at most `places`. Places are given first come, first served.

    The bot's limit is (MESSAGES_PER_S, 1 s, MIN_GAP_S); a chat's (1, CHAT_INTERVAL_S):
    its next message starts a second after the last one's answer; a group's
    (GROUP_MESSAGES, GROUP_PERIOD_S). It replaces PTB's overall limit, a leaky bucket
    of one (aiolimiter's AsyncLimiter(1, 1 / rate)), which loses each wake-up's
    lateness for good and, to leave room for jitter, had to be set under Telegram's
    30: on a busy loop its 28/s came out at 24-27/s. Here a late start is made up by
    the next ones, at most one per `min_gap_s`."""

    def __init__(self, places: int, period_s: float, min_gap_s: float = 0.0) -> None:
        self._places, self._period_s, self._min_gap_s = places, period_s, min_gap_s
        self._in_flight = 0
        self._answered: deque[float] = deque()    # loop times of answers in the last period
        self._last_start = float("-inf")
        self._an_answer = asyncio.Event()
        self._lock = asyncio.Lock()               # first come, first served

    @contextlib.asynccontextmanager
    async def place(self) -> AsyncIterator[None]:
        """Waits for a place in the window and holds it for the request made inside."""
        loop = asyncio.get_running_loop()
        async with self._lock:
            while True:
                now = loop.time()
                while self._answered and self._answered[0] <= now - self._period_s:
                    self._answered.popleft()
                if self._in_flight + len(self._answered) < self._places:
                    wait = self._last_start + self._min_gap_s - now
                    if wait <= 0:
                        break
                    await asyncio.sleep(wait)
                elif self._answered:
                    await asyncio.sleep(self._answered[0] + self._period_s - now)
                else:                   # every place is a request still waiting for its answer
                    self._an_answer.clear()
                    await self._an_answer.wait()
            self._in_flight += 1
            self._last_start = loop.time()
        try:
            yield
        finally:
            self._in_flight -= 1
            self._answered.append(loop.time())
            self._an_answer.set()

    def idle(self, now: float) -> bool:
        """Nothing waiting, in flight or answered within the period: forgettable."""
        return (not self._lock.locked() and not self._in_flight
                and (not self._answered or self._answered[-1] + self._period_s <= now))


@dataclass
class _Chat:
    """A chat's windows (a group's both), and how many requests use them now."""

    interval: AnsweredWindow
    group: AnsweredWindow | None
    users: int = 0

    def idle(self, now: float) -> bool:
        return (not self.users and self.interval.idle(now)
                and (self.group is None or self.group.idle(now)))


class HeldTurn:
    """A chat's turn that the caller holds (ChatRateLimiter.turn): a request to that
    chat passed as `rate_limit_args=` does not wait for it again."""

    def __init__(self, chat: str) -> None:
        self.chat, self.held = chat, True


class ChatRateLimiter(AIORateLimiter):
    """Every request to a chat (each attempt: a 429's retry too) takes a place in the
    bot's AnsweredWindow, instead of AIORateLimiter's overall leaky bucket.

    AIORateLimiter limits the whole bot and group chats but not private chats,
    where Telegram also allows only one message a second. Here requests to one chat
    are serialised, each starting CHAT_INTERVAL_S after the previous one was
    *answered*: Telegram received it before it answered, so network jitter can never
    squeeze two messages to a chat into one second at Telegram's end.

    Groups get at most GROUP_MESSAGES in any GROUP_PERIOD_S, counted the same way.
    AIORateLimiter's own group limit is off: a leaky bucket lets 20 go at once and
    then one every 3 s, up to 39 in one minute.

    A request waits for its chat's turn first and only then for a place in the bot's
    window: a chat that must wait holds nothing the other chats need."""

    def __init__(self, chat_interval_s: float = CHAT_INTERVAL_S,
                 group_messages: int = GROUP_MESSAGES, group_period_s: float = GROUP_PERIOD_S
                 ) -> None:
        super().__init__(overall_max_rate=0, group_max_rate=0, max_retries=RETRY_AFTER_RETRIES)
        self._window = AnsweredWindow(MESSAGES_PER_S, 1.0, MIN_GAP_S)
        self._chat_interval_s = chat_interval_s
        self._group_messages = group_messages
        self._group_period_s = group_period_s
        self._chats: dict[str, _Chat] = {}

    @contextlib.asynccontextmanager
    async def turn(self, chat_id: int | str) -> AsyncIterator[HeldTurn]:
        """Waits for the chat's turn (its interval, a group's window too) and holds it:
        pass the HeldTurn as `rate_limit_args` to the requests made inside. The caller
        can so wait for a chat without holding anything shared, then take what it
        shares (a send slot) only to send."""
        key = str(chat_id)
        chat = self._chats.get(key)
        if chat is None:
            group = (AnsweredWindow(self._group_messages, self._group_period_s)
                     if _is_group(chat_id) else None)
            chat = self._chats[key] = _Chat(AnsweredWindow(1, self._chat_interval_s), group)
        chat.users += 1
        held = HeldTurn(key)
        try:
            async with chat.interval.place(), (chat.group.place() if chat.group is not None
                                               else contextlib.nullcontext()):
                try:
                    yield held
                finally:
                    held.held = False
        finally:
            chat.users -= 1
            self._forget_idle_chats(asyncio.get_running_loop().time())

    async def process_request(self, callback: Callable[..., Coroutine[Any, Any, Any]],
                              args: Any, kwargs: dict[str, Any], endpoint: str,
                              data: dict[str, Any], rate_limit_args: Any) -> Any:
        chat_id = data.get("chat_id")
        if chat_id is None:
            return await super().process_request(_counting_429(callback), args, kwargs,
                                                 endpoint, data, None)
        callback = _counting_429(_in_window(callback, self._window))
        held = rate_limit_args
        if isinstance(held, HeldTurn) and held.chat == str(chat_id) and held.held:
            return await super().process_request(callback, args, kwargs, endpoint, data, None)
        async with self.turn(chat_id):
            return await super().process_request(callback, args, kwargs, endpoint, data, None)

    def _forget_idle_chats(self, now: float) -> None:
        # A chat's entry matters only for CHAT_INTERVAL_S after its last message (a
        # group's for GROUP_PERIOD_S).
        if len(self._chats) > 1024:
            for key in [k for k, c in self._chats.items() if c.idle(now)]:
                del self._chats[key]


def _is_group(chat_id: object) -> bool:
    """As python-telegram-bot tells: a negative id, or an @name (channels, supergroups)."""
    try:
        return int(chat_id) < 0         # type: ignore[call-overload]
    except (TypeError, ValueError):
        return isinstance(chat_id, str)


def _in_window(callback: Callable[..., Coroutine[Any, Any, Any]], window: AnsweredWindow
               ) -> Callable[..., Coroutine[Any, Any, Any]]:
    """The request, made in a place of the window."""
    async def request(*args: Any, **kwargs: Any) -> Any:
        async with window.place():
            return await callback(*args, **kwargs)
    return request


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
