"""ChatRateLimiter: every message the bot sends (replies, reminders, alerts) goes
through it: at most MESSAGES_PER_S in any second for the whole bot, one message a
second per chat and GROUP_MESSAGES a minute per group; a 429's retry_after is waited
out and the request retried, RETRY_AFTER_RETRIES times (SPEC "Telegram's real
behaviour").
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from telegram.error import (
    RetryAfter,
)
from telegram.ext import (
    AIORateLimiter,
)

from buzzbotd.ops.metrics import METRICS

# Telegram allows about 30 messages a second in all, and a 429 costs every chat a pause
# of retry_after. Counted as OverallWindow counts, network jitter cannot push 29 over.
MESSAGES_PER_S = 29
MIN_GAP_S = 1 / 40             # between two requests' starts: no burst of 29 at once
CHAT_INTERVAL_S = 1.0          # at most one message a second in any one chat
GROUP_MESSAGES = 20            # Telegram: at most 20 messages a minute in one group
GROUP_PERIOD_S = 60.0
RETRY_AFTER_RETRIES = 3        # 429s waited out per message before giving up for this round


class OverallWindow:
    """At most `per_s` of the bot's requests reach Telegram in any one second, whatever
    the network's jitter, and no two start within `min_gap_s` of each other.

    A request holds a place in the window from its start until a second after its
    answer: Telegram received it in between, so of any requests Telegram received within
    one second, the last to start found all the others still holding their places, and
    so there are at most `per_s`. (The chats' limit below is counted the same way.)

    It replaces PTB's overall limit, a leaky bucket of one (aiolimiter's AsyncLimiter(1,
    1 / rate)), which loses each wake-up's lateness for good and, to leave room for
    jitter, had to be set under Telegram's 30: on a busy loop its 28/s came out at
    24-27/s. Here a late start is made up by the next ones, at most one per
    `min_gap_s`."""

    def __init__(self, per_s: int = MESSAGES_PER_S, min_gap_s: float = MIN_GAP_S) -> None:
        self._per_s, self._min_gap_s = per_s, min_gap_s
        self._in_flight = 0
        self._answered: deque[float] = deque()    # loop times of answers in the last second
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
                while self._answered and self._answered[0] <= now - 1.0:
                    self._answered.popleft()
                if self._in_flight + len(self._answered) < self._per_s:
                    wait = self._last_start + self._min_gap_s - now
                    if wait <= 0:
                        break
                    await asyncio.sleep(wait)
                elif self._answered:
                    await asyncio.sleep(self._answered[0] + 1.0 - now)
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


@dataclass
class _ChatTurn:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    free_at: float = 0.0          # loop time from which the chat may get its next message
    users: int = 0
    answered: deque[float] = field(default_factory=deque)   # groups: the last few answers


class ChatRateLimiter(AIORateLimiter):
    """Every request to a chat (each attempt: a 429's retry too) takes a place in one
    OverallWindow, instead of AIORateLimiter's overall leaky bucket.

    AIORateLimiter limits the whole bot and group chats but not private chats,
    where Telegram also allows only one message a second. Here requests to one chat
    are serialised, each starting CHAT_INTERVAL_S after the previous one was
    *answered*: Telegram received it before it answered, so network jitter can never
    squeeze two messages to a chat into one second at Telegram's end.

    Groups get at most GROUP_MESSAGES in any GROUP_PERIOD_S, counted the same way
    (a message starts GROUP_PERIOD_S after the answer to the one GROUP_MESSAGES
    before it). AIORateLimiter's own group limit is off: a leaky bucket lets 20 go
    at once and then one every 3 s, up to 39 in one minute."""

    def __init__(self, chat_interval_s: float = CHAT_INTERVAL_S,
                 group_messages: int = GROUP_MESSAGES, group_period_s: float = GROUP_PERIOD_S
                 ) -> None:
        super().__init__(overall_max_rate=0, group_max_rate=0, max_retries=RETRY_AFTER_RETRIES)
        self._window = OverallWindow()
        self._chat_interval_s = chat_interval_s
        self._group_messages = group_messages
        self._group_period_s = group_period_s
        self._turns: dict[object, _ChatTurn] = {}

    async def process_request(self, callback: Callable[..., Coroutine[Any, Any, Any]],
                              args: Any, kwargs: dict[str, Any], endpoint: str,
                              data: dict[str, Any], rate_limit_args: int | None) -> Any:
        chat_id = data.get("chat_id")
        if chat_id is None:
            return await super().process_request(_counting_429(callback), args, kwargs,
                                                 endpoint, data, rate_limit_args)
        callback = _counting_429(_in_window(callback, self._window))
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


def _in_window(callback: Callable[..., Coroutine[Any, Any, Any]], window: OverallWindow
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
