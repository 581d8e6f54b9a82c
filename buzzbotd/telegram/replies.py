"""Replies: the answers to commands, sent per chat in the chat's turn, while no
handler waits for them.

python-telegram-bot handles 16 updates at once; a handler that awaited its reply
held one of those 16 while its chat waited for its turn (a second per message, 20
a minute in a group): 40 /price in one group held all 16 and another user's
/price waited a minute. Here a handler hands its reply over (`post`) and returns.
Each chat with replies waiting has one sender task, which waits for the chat's
turn holding nothing shared. At most one reply of each kind waits per chat: a
second /price while one waits is answered by the same message (the same text
once, another text joined to it within Telegram's 4,096 characters); at most
MAX_WAITING replies wait in all, past that a reply is dropped (logged once a
minute).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from telegram import Chat, Message, ReplyParameters
from telegram.error import TelegramError

from buzzbotd.runtime.text import shorten
from buzzbotd.telegram.ratelimit import ChatRateLimiter, HeldTurn

log = logging.getLogger("buzzbotd.telegram")

TELEGRAM_TEXT_MAX = 4096
MAX_WAITING = 1000             # replies waiting for their chats' turns, in all
DROPPED_LOG_EVERY_S = 60.0


@dataclass
class _Reply:
    message: Message                 # the first message it answers (quoted in groups)
    texts: list[str] = field(default_factory=list)

    def add(self, text: str) -> bool:
        """Joins `text` (once) if the whole still fits a message; False if it does not."""
        if text in self.texts:
            return True
        if len(self.text) + 2 + len(text) > TELEGRAM_TEXT_MAX:
            return False
        self.texts.append(text)
        return True

    @property
    def text(self) -> str:
        return "\n\n".join(self.texts)


class Replies:
    """The replies waiting for their chats' turns; `post` from a handler."""

    def __init__(self, limiter: ChatRateLimiter, max_waiting: int = MAX_WAITING) -> None:
        self._limiter = limiter
        self._max_waiting = max_waiting
        self._waiting: dict[int, dict[str, _Reply]] = {}    # chat → kind → reply, in order
        self._count = 0
        self._senders: dict[int, asyncio.Task[None]] = {}
        self._dropped = 0
        self._dropped_logged_at = float("-inf")

    def post(self, message: Message, kind: str, text: str) -> None:
        """Sends `text` in answer to `message` when its chat's turn comes; a reply of
        the same `kind` already waiting in that chat carries it instead."""
        text = shorten(text, TELEGRAM_TEXT_MAX)
        chat = message.chat_id
        waiting = self._waiting.setdefault(chat, {})
        reply = waiting.get(kind)
        if reply is not None and reply.add(text):
            log.debug("chat %d: a %s reply is waiting already; this one goes with it", chat,
                      kind)
            return
        if reply is not None or self._count >= self._max_waiting:
            self._drop(chat, kind)
            return
        waiting[kind] = _Reply(message, [text])
        self._count += 1
        if chat not in self._senders:
            self._senders[chat] = asyncio.get_running_loop().create_task(
                self._send_all(chat), name=f"replies:{chat}")

    def waiting(self) -> int:
        return self._count

    async def stop(self) -> None:
        """At shutdown: the replies still waiting for their turn are not sent."""
        senders = list(self._senders.values())
        for task in senders:
            task.cancel()
        await asyncio.gather(*senders, return_exceptions=True)

    async def _send_all(self, chat: int) -> None:
        try:
            while self._waiting.get(chat):
                async with self._limiter.turn(chat) as turn:
                    waiting = self._waiting[chat]
                    kind = next(iter(waiting))
                    reply = waiting.pop(kind)
                    self._count -= 1
                    try:
                        await _answer(reply.message, reply.text, turn)
                    except TelegramError as e:
                        # Telegram refused or did not take it (blocked, network): not a bug.
                        log.warning("chat %d: could not answer %s: %s", chat, kind, e)
                    except Exception:   # noqa: BLE001 - one reply's bug stops no other
                        log.exception("chat %d: could not answer %s", chat, kind)
        finally:
            del self._senders[chat]
            if not self._waiting.get(chat):
                self._waiting.pop(chat, None)

    def _drop(self, chat: int, kind: str) -> None:
        self._dropped += 1
        now = time.monotonic()
        if now - self._dropped_logged_at >= DROPPED_LOG_EVERY_S:
            log.warning("chat %d: a %s reply dropped: %d replies wait for their chats' turns "
                        "(at most %d); %d dropped since the last such line", chat, kind,
                        self._count, self._max_waiting, self._dropped)
            self._dropped_logged_at, self._dropped = now, 0


async def _answer(message: Message, text: str, turn: HeldTurn) -> None:
    """What message.reply_text sends (quoting the message outside private chats, in
    its forum topic), in the chat's turn the caller holds; sent even if the message
    was deleted meanwhile."""
    quote = (None if message.chat.type == Chat.PRIVATE else
             ReplyParameters(message.message_id, allow_sending_without_reply=True))
    await message.get_bot().send_message(
        message.chat_id, text, reply_parameters=quote, rate_limit_args=turn,
        message_thread_id=message.message_thread_id if message.is_topic_message else None)
