"""A stand-in for the Telegram Bot API: `POST /bot<token>/<method>`.

It speaks what python-telegram-bot 22 sends (form fields whose non-string
values are JSON-encoded; a JSON body works too) and answers in the Bot API's
envelope, `{"ok": true, "result": …}` or `{"ok": false, "error_code": …,
"description": …}`. Stdlib only; usable in-process by tests and `make demo`:

    fake = FakeTelegram().start()
    reply = fake.ask(user_id=42, text="/price")      # inject, wait for the answer

Methods: getMe, deleteWebhook, getUpdates (long polling honouring `offset`
and `timeout`, woken at once by an injected message), sendMessage (recorded
in `sent`), setMyCommands (recorded in `commands`), and `true` for any other.
Knobs, as Telegram behaves:
  - limits: more than `overall_per_s` messages in any second, or a second
    message to a chat within `chat_interval_s`, is answered 429 with
    `retry_after` (counted in `too_many`);
  - `inbound_jitter_s`: each sendMessage spends a random 0..inbound_jitter_s on
    its way in, and is counted for the limits when it arrives;
  - groups (chat id < 0): more than `group_per_window` messages to one group in
    any `group_window_s` is answered 429 too (counted in `too_many["group"]`);
  - `block(chat_id)`: 403 "Forbidden: bot was blocked by the user";
  - `forget_chat(chat_id)`: 400 "Bad Request: chat not found" (the chat is gone);
  - `inject_anonymous(group, text)`: a message of an anonymous group admin (from
    GroupAnonymousBot, the group in `sender_chat`);
  - `migrate(old, new)`: a group upgraded to a supergroup; a message to `old` is
    answered 400 with `parameters.migrate_to_chat_id = new`;
  - `revoke_token()`: the token stops working; every method answers 401;
  - `inject_my_chat_member(user, status)`: the user changed the bot's status in
    their chat (e.g. "kicked": they blocked it);
  - getUpdates honours `allowed_updates` as Telegram does: kept from one call to
    the next, and an update of another type is never delivered;
  - a getUpdates arriving while another waits ends the waiting one with 409
    Conflict (two bot instances), and `conflict = True` answers every
    getUpdates 409; such an overlap is recorded in `overlapping_polls` (the
    two calls' `via` URLs) unless the waiting call's client is gone (a killed
    daemon's poll is not a second poller);
  - a token other than `token`: 401 Unauthorized on every method.
Faults from tests.fakes.base apply per method name, e.g.
`fake.add_fault("sendMessage", Fault.drop())`.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from tests.fakes.base import FakeAPI, Request, Response

TOKEN = "123456:TEST-token_of-the-fake"
BOT_USER = {"id": 100000001, "is_bot": True, "first_name": "Buzz",
            "username": "buzzbotd_test_bot", "can_join_groups": True,
            "can_read_all_group_messages": False, "supports_inline_queries": False}
# Telegram's one user for every anonymous group admin (the sender is in sender_chat).
ANONYMOUS_ADMIN = {"id": 1087968824, "is_bot": True, "first_name": "Group",
                   "username": "GroupAnonymousBot"}
CONFLICT = ("Conflict: terminated by other getUpdates request; make sure that only one bot "
            "instance is running")
MAX_UPDATES = 100
# What Telegram delivers when allowed_updates was never given: all but these three.
DEFAULT_UPDATES = ("message", "edited_message", "channel_post", "edited_channel_post",
                   "inline_query", "chosen_inline_result", "callback_query", "my_chat_member",
                   "shipping_query", "pre_checkout_query", "poll", "poll_answer",
                   "chat_join_request", "business_message")


@dataclass(frozen=True)
class Sent:
    chat_id: int
    text: str
    at: float                       # time.monotonic() when accepted
    wall: float                     # time.time() when accepted


class FakeTelegram(FakeAPI):
    name = "telegram"

    def __init__(self, token: str = TOKEN, overall_per_s: int = 30,
                 chat_interval_s: float = 1.0, group_per_window: int = 20,
                 group_window_s: float = 60.0, inbound_jitter_s: float = 0.0) -> None:
        super().__init__()
        self.inbound_jitter_s = inbound_jitter_s
        self._jitter = random.Random(13)
        self.token = token
        self.overall_per_s = overall_per_s
        self.chat_interval_s = chat_interval_s
        self.group_per_window = group_per_window
        self.group_window_s = group_window_s
        self.allowed_updates: list[str] | None = None    # None: Telegram's default
        self.inline_answers: dict[str, dict[str, Any]] = {}   # inline query id → answer
        self._migrated: dict[int, int] = {}
        self._to_group: dict[int, deque[float]] = {}
        self.sent: list[Sent] = []
        self.commands: dict[str, list[str]] = {}     # scope → command names
        self.too_many: Counter[str] = Counter()      # 429s: "overall" | "chat"
        self.refused: Counter[int] = Counter()       # 403s per blocked chat
        self.conflicts = 0                           # 409s answered
        self.conflict = False
        self._blocked: set[int] = set()
        self._gone: set[int] = set()
        self._updates: list[dict[str, Any]] = []
        self._next_update_id = 1
        self._next_message_id = 1
        self._recent: deque[float] = deque()        # accepted sends in the last second
        self._last_to_chat: dict[int, float] = {}
        self._poller = 0                             # the getUpdates call that is current
        self._waiting: dict[int, Request] = {}       # getUpdates calls not yet answered
        self.overlapping_polls: list[tuple[str, str]] = []   # (waiting via, newcomer via)
        self._updates_changed = threading.Condition(self._lock)

    def stop(self) -> None:
        with self._lock:
            self._stopping.set()
            self._updates_changed.notify_all()
        super().stop()

    # -- knobs -------------------------------------------------------------------

    def inject_message(self, user_id: int, text: str, chat_id: int | None = None,
                       first_name: str = "Tester") -> int:
        """A message from a user (a command if it starts with /); returns its update_id."""
        chat_id = user_id if chat_id is None else chat_id
        message: dict[str, Any] = {
            "message_id": self._message_id(), "date": int(time.time()), "text": text,
            "from": {"id": user_id, "is_bot": False, "first_name": first_name},
            "chat": ({"id": chat_id, "type": "private", "first_name": first_name}
                     if chat_id > 0 else {"id": chat_id, "type": "group", "title": "A group"}),
        }
        return self._add_message(message, text)

    def inject_anonymous(self, group_id: int, text: str) -> int:
        """A message from an anonymous admin of a supergroup, as Telegram sends it:
        `from` is the one GroupAnonymousBot for every such admin of every group, the
        group itself is in `sender_chat`. Returns the update_id."""
        group = {"id": group_id, "type": "supergroup", "title": f"Group {group_id}"}
        message: dict[str, Any] = {
            "message_id": self._message_id(), "date": int(time.time()), "text": text,
            "from": dict(ANONYMOUS_ADMIN), "sender_chat": group, "chat": group,
        }
        return self._add_message(message, text)

    def _add_message(self, message: dict[str, Any], text: str) -> int:
        if text.startswith("/"):
            message["entities"] = [{"type": "bot_command", "offset": 0,
                                    "length": len(text.split()[0])}]
        return self._add_update("message", message)

    def _add_update(self, kind: str, body: dict[str, Any]) -> int:
        with self._lock:
            update_id = self._next_update_id
            self._next_update_id += 1
            self._updates.append({"update_id": update_id, kind: body})
            self._updates_changed.notify_all()
        return update_id

    def inject_my_chat_member(self, user_id: int, new_status: str,
                              old_status: str = "member", chat_id: int | None = None) -> int:
        """The user changed the bot's membership in a chat: "kicked" in their private chat
        is what blocking the bot looks like. Returns the update_id."""
        chat_id = user_id if chat_id is None else chat_id
        user = {"id": user_id, "is_bot": False, "first_name": "Tester"}
        change = {
            "chat": ({"id": chat_id, "type": "private", "first_name": "Tester"}
                     if chat_id > 0 else {"id": chat_id, "type": "group", "title": "A group"}),
            "from": user, "date": int(time.time()),
            "old_chat_member": _member(old_status), "new_chat_member": _member(new_status),
        }
        return self._add_update("my_chat_member", change)

    def inject_inline_query(self, user_id: int, query: str = "") -> str:
        """`@bot <query>` typed by a user in any chat (Bot API's InlineQuery); returns
        its id, under which `inline_answers` keeps the bot's answerInlineQuery."""
        with self._lock:
            query_id = f"iq{self._message_id()}"
        self._add_update("inline_query", {
            "id": query_id, "query": query, "offset": "", "chat_type": "private",
            "from": {"id": user_id, "is_bot": False, "first_name": "Tester"}})
        return query_id

    def migrate(self, old_chat_id: int, new_chat_id: int) -> None:
        with self._lock:
            self._migrated[old_chat_id] = new_chat_id

    def revoke_token(self) -> None:
        with self._lock:
            self.token = "0:revoked"

    def start_conflict(self) -> None:
        """Another instance starts polling the token: the waiting getUpdates ends with
        409 at once, as Telegram does, and so does every later one until
        `conflict = False`."""
        with self._lock:
            self.conflict = True
            self._poller += 1
            self._updates_changed.notify_all()

    def forget_chat(self, chat_id: int) -> None:
        """The chat is gone (a deleted account, a deleted group): 400 "chat not found"."""
        with self._lock:
            self._gone.add(chat_id)

    def block(self, chat_id: int) -> None:
        with self._lock:
            self._blocked.add(chat_id)

    def unblock(self, chat_id: int) -> None:
        with self._lock:
            self._blocked.discard(chat_id)

    # -- reading what happened -----------------------------------------------------

    def polling(self) -> bool:
        """Whether a getUpdates call is waiting for updates now."""
        with self._lock:
            return bool(self._waiting)

    def pending_updates(self) -> int:
        """Updates not yet confirmed by a getUpdates offset (not yet received for sure)."""
        with self._lock:
            return len(self._updates)

    def messages_to(self, chat_id: int) -> list[str]:
        with self._lock:
            return [s.text for s in self.sent if s.chat_id == chat_id]

    def wait_for_message(self, chat_id: int, contains: str = "", timeout: float = 10.0,
                         since: int = 0) -> Sent:
        """The first message to `chat_id` containing `contains`, among sent[since:]."""
        def found() -> Sent | None:
            return next((s for s in self.sent[since:]
                         if s.chat_id == chat_id and contains in s.text), None)
        if not self.wait_until(lambda: found() is not None, timeout):
            raise AssertionError(f"no message to {chat_id} containing {contains!r} in "
                                 f"{timeout}s; it got {self.messages_to(chat_id)}")
        message = found()
        assert message is not None
        return message

    def ask(self, user_id: int, text: str, contains: str = "", timeout: float = 15.0,
            chat_id: int | None = None) -> str:
        """Sends `text` as the user and returns the bot's next reply to that chat."""
        since = len(self.sent)
        self.inject_message(user_id, text, chat_id)
        chat = user_id if chat_id is None else chat_id
        return self.wait_for_message(chat, contains, timeout, since).text

    def wait_for_polls(self, count: int, timeout: float = 20.0) -> None:
        """Until `count` getUpdates calls have been made in all."""
        if not self.wait_until(lambda: self._calls("getupdates") >= count, timeout):
            raise AssertionError(f"{self._calls('getupdates')} getUpdates of {count}")

    def _calls(self, method: str) -> int:
        return sum(1 for r in self.requests if self.route(r).lower() == method)

    # -- the API ---------------------------------------------------------------------

    def route(self, request: Request) -> str:
        """The Bot API method name, e.g. "sendMessage"."""
        return request.path.rsplit("/", 1)[-1]

    def handle(self, request: Request) -> Response:
        prefix, _, method = request.path.lstrip("/").rpartition("/")
        if not prefix.startswith("bot"):
            return _error(404, "Not Found")
        if prefix[3:] != self.token:
            return _error(401, "Unauthorized")
        fields = _fields(request)
        method = method.lower()
        if method == "getme":
            return _ok(BOT_USER)
        if method == "getupdates":
            return self._get_updates(fields, request)
        if method == "sendmessage":
            return self._send_message(fields)
        if method == "answerinlinequery":
            with self._lock:
                self.inline_answers[str(fields["inline_query_id"])] = {
                    "results": _json(fields["results"]),
                    "cache_time": int(fields.get("cache_time") or 300),
                    "is_personal": str(fields.get("is_personal")).lower() == "true"}
                self._updates_changed.notify_all()
            self.notify_changed()
            return _ok(True)
        if method == "setmycommands":
            scope = _json(fields.get("scope")) or {"type": "default"}
            key = f"chat:{scope['chat_id']}" if scope.get("type") == "chat" else scope["type"]
            with self._lock:
                self.commands[key] = [c["command"] for c in _json(fields["commands"])]
        return _ok(True)

    def _get_updates(self, fields: dict[str, Any], request: Request) -> Response:
        offset = int(fields.get("offset") or 0)
        timeout = float(fields.get("timeout") or 0)
        limit = int(fields.get("limit") or MAX_UPDATES)
        deadline = time.monotonic() + timeout
        with self._lock:
            if self.conflict:
                self.conflicts += 1
                return _error(409, CONFLICT)
            alive = [r for r in self._waiting.values() if not _client_gone(r.connection)]
            if alive:
                self.overlapping_polls.append((alive[0].via, request.via))
            self._poller += 1
            me = self._poller
            self._waiting[me] = request
            try:
                return self._wait_for_updates(fields, me, offset, limit, deadline)
            finally:
                del self._waiting[me]

    def _wait_for_updates(self, fields: dict[str, Any], me: int, offset: int, limit: int,
                          deadline: float) -> Response:
        with self._lock:
            if fields.get("allowed_updates") is not None:
                self.allowed_updates = _json(fields["allowed_updates"]) or None
            self._updates_changed.notify_all()        # ends an earlier poller with 409
            self._changed.notify_all()                # wait_until: a poller is waiting
            while True:
                # `offset` confirms every update before it, as in the Bot API, and an
                # update of a type the bot did not ask for is dropped, never delivered.
                self._updates = [u for u in self._updates
                                 if u["update_id"] >= offset and self._wanted(u)]
                if self._updates or self._stopping.is_set() or self._poller != me:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._updates_changed.wait(left)
            if self._poller != me:
                self.conflicts += 1
                return _error(409, CONFLICT)
            return _ok(self._updates[:limit])

    def _wanted(self, update: dict[str, Any]) -> bool:
        kinds = self.allowed_updates or DEFAULT_UPDATES
        return any(kind in update for kind in kinds)

    def _send_message(self, fields: dict[str, Any]) -> Response:
        chat_id = int(fields["chat_id"])
        text = str(fields["text"])
        if self.inbound_jitter_s:
            with self._lock:
                delay = self._jitter.uniform(0, self.inbound_jitter_s)
            time.sleep(delay)
        now = time.monotonic()
        with self._lock:
            if chat_id in self._blocked:
                self.refused[chat_id] += 1
                return _error(403, "Forbidden: bot was blocked by the user")
            if chat_id in self._gone:
                return _error(400, "Bad Request: chat not found")
            if chat_id in self._migrated:
                return _error(400, "Bad Request: group chat was upgraded to a supergroup chat",
                              migrate_to_chat_id=self._migrated[chat_id])
            while self._recent and self._recent[0] <= now - 1.0:
                self._recent.popleft()
            if len(self._recent) >= self.overall_per_s:
                self.too_many["overall"] += 1
                return _too_many(1)
            last = self._last_to_chat.get(chat_id)
            if last is not None and now - last < self.chat_interval_s:
                self.too_many["chat"] += 1
                return _too_many(1)
            if chat_id < 0:
                to_group = self._to_group.setdefault(chat_id, deque())
                while to_group and to_group[0] <= now - self.group_window_s:
                    to_group.popleft()
                if len(to_group) >= self.group_per_window:
                    self.too_many["group"] += 1
                    return _too_many(1)
                to_group.append(now)
            self._recent.append(now)
            self._last_to_chat[chat_id] = now
            self.sent.append(Sent(chat_id, text, now, time.time()))
            message = {"message_id": self._message_id(), "date": int(time.time()),
                       "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
                       "from": BOT_USER, "text": text}
        return _ok(message)

    def _message_id(self) -> int:
        with self._lock:
            self._next_message_id += 1
            return self._next_message_id


def _client_gone(connection: Any) -> bool:
    """Whether the client closed its end (its process died): a peek reads EOF."""
    if connection is None:
        return False
    try:
        return connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _member(status: str) -> dict[str, Any]:
    """The bot as a ChatMember of that status ("kicked" carries until_date, 0: forever)."""
    member: dict[str, Any] = {"status": status, "user": BOT_USER}
    if status == "kicked":
        member["until_date"] = 0
    return member


def _fields(request: Request) -> dict[str, Any]:
    """The call's parameters: form fields (as PTB sends them) or a JSON body."""
    if request.headers.get("Content-Type", "").startswith("application/json"):
        return request.json() or {}
    return {key: values[-1] for key, values in request.query.items()}


def _json(value: Any) -> Any:
    """A form field holding JSON (PTB encodes lists, objects and numbers so)."""
    return json.loads(value) if isinstance(value, str) else value


def _ok(result: Any) -> Response:
    return Response(200, {"ok": True, "result": result})


def _error(status: int, description: str, **parameters: Any) -> Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return Response(status, body)


def _too_many(retry_after: int) -> Response:
    return _error(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after)
