"""A stand-in for a Mastodon server's REST API, as much of it as buzzbotd uses.

  GET  /api/v1/accounts/verify_credentials   the token's account
  POST /api/v1/statuses                      a status; a repeated Idempotency-Key
                                             within KEY_MEMORY_S answers the first
  GET  /api/v1/accounts/:id/statuses         its statuses, newest first

Answers are Mastodon's own (mastodon/documentation content/en/methods/*.md,
and mastodon/mastodon's code where the docs are silent; cited beside each).
A status's `content` is HTML as app/lib/text_formatter.rb makes it: escaped,
links and hashtags made anchors, paragraphs in <p>, line breaks <br />. The
key memory runs on the fake's `clock` (epoch seconds, injectable). Faults come
from FakeAPI (503, 429 with its headers, hangs, dropped connections, each
optionally after the status was made).
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from tests.fakes.base import FakeAPI, Fault, Request, Response

ACCESS_TOKEN = "test-mastodon-access-token"
ACCOUNT_ID = "109371864738211234"
USERNAME = "buzz"
POST_STATUS = "POST /api/v1/statuses"
VERIFY = "GET /api/v1/accounts/verify_credentials"
STATUSES = f"GET /api/v1/accounts/{ACCOUNT_ID}/statuses"
KEY_MEMORY_S = 3600          # post_status_service.rb: redis.setex("idempotency:status:…", 3_600, …)
MAX_CHARS = 500
URL_CHARS = 23               # a link counts as 23 characters (StatusLengthValidator)
# methods/statuses.md, "Post a new status", 401 and 422.
INVALID_TOKEN = {"error": "The access token is invalid"}
BLANK = {"error": "Validation failed: Text can't be blank"}
# The 422 for a long text, as clients quote it (ihabunek/toot#469, edsu/feediverse#13).
TOO_LONG = {"error": f"Validation failed: Text character limit of {MAX_CHARS} exceeded"}
# methods/accounts.md's 429; the headers are config/initializers/rack_attack.rb's.
TOO_MANY = {"error": "Too many requests"}
_URL = re.compile(r"https?://[^\s<>\"']+")
_HASHTAG = re.compile(r"(?<![\w/#])#(\w*[^\W\d]\w*)")


@dataclass
class Status:
    id: str
    text: str
    visibility: str
    created_at: float
    key: str | None


class FakeMastodon(FakeAPI):
    name = "mastodon"

    def __init__(self) -> None:
        super().__init__()
        self.statuses: list[Status] = []
        self.clock: Callable[[], float] = time.time
        self._keys: dict[str, tuple[str, float]] = {}     # Idempotency-Key → (id, stored at)
        self._ids = itertools.count(113_500_000_000_000_001)
        self._store = threading.Lock()

    def texts(self) -> list[str]:
        with self._store:
            return [s.text for s in self.statuses]

    def rate_limited(self, reset_at: datetime, **kw: Any) -> Fault:
        """rack_attack.rb's throttled_responder: the reset as iso8601(6)."""
        reset = reset_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return Fault.status_code(429, TOO_MANY, {"X-RateLimit-Limit": "300",
                                                 "X-RateLimit-Remaining": "0",
                                                 "X-RateLimit-Reset": reset}, **kw)

    def handle(self, request: Request) -> Response:
        if request.headers.get("Authorization") != f"Bearer {ACCESS_TOKEN}":
            return Response(401, INVALID_TOKEN)
        route = self.route(request)
        if route == POST_STATUS:
            return self._post(request)
        if route == VERIFY:
            return Response(200, self._account() | {
                "source": {"privacy": "public", "sensitive": False, "language": "",
                           "note": "", "fields": []}})
        if route == STATUSES:
            limit = min(int(request.query.get("limit", ["20"])[0]), 40)
            with self._store:
                newest = list(reversed(self.statuses))[:limit]
            return Response(200, [self._entity(s) for s in newest])
        # app/controllers/api/base_controller.rb: ActiveRecord::RecordNotFound
        return Response(404, {"error": "Record not found"})

    def _post(self, request: Request) -> Response:
        if request.headers.get("Content-Type", "").startswith("application/json"):
            params = request.json() or {}
        else:
            params = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        text = str(params.get("status") or "")
        key = request.headers.get("Idempotency-Key")
        now = self.clock()
        with self._store:
            if key and key in self._keys and self._keys[key][1] + KEY_MEMORY_S > now:
                first = next(s for s in self.statuses if s.id == self._keys[key][0])
                return Response(200, self._entity(first))    # Status.find(existing_id)
            if not text.strip():
                return Response(422, BLANK)
            if len(_URL.sub("x" * URL_CHARS, text)) > MAX_CHARS:
                return Response(422, TOO_LONG)
            status = Status(str(next(self._ids)), text, str(params.get("visibility") or "public"),
                            now, key)
            self.statuses.append(status)
            if key:
                self._keys[key] = (status.id, now)
        return Response(200, self._entity(status))

    def _account(self) -> dict[str, Any]:
        # entities/Account.md (verify_credentials adds `source`)
        return {"id": ACCOUNT_ID, "username": USERNAME, "acct": USERNAME,
                "display_name": "Buzz", "locked": False, "bot": True,
                "created_at": "2026-01-05T00:00:00.000Z", "note": "",
                "url": f"{self.url}/@{USERNAME}", "statuses_count": len(self.statuses)}

    def _entity(self, status: Status) -> dict[str, Any]:
        # entities/Status.md, the fields buzzbotd reads and a few around them
        created = datetime.fromtimestamp(status.created_at, UTC)
        return {"id": status.id, "created_at": created.strftime("%Y-%m-%dT%H:%M:%S.")
                + f"{created.microsecond // 1000:03d}Z",
                "in_reply_to_id": None, "sensitive": False, "spoiler_text": "",
                "visibility": status.visibility, "language": "en",
                "uri": f"{self.url}/users/{USERNAME}/statuses/{status.id}",
                "url": f"{self.url}/@{USERNAME}/{status.id}",
                "content": self._html(status.text), "account": self._account(),
                "media_attachments": [], "mentions": [], "tags": [], "emojis": []}

    def _html(self, text: str) -> str:
        """text_formatter.rb: entities linked, the rest escaped (ERB::Util.h), then
        simple_format: paragraphs on blank lines, <br /> on single newlines."""
        parts, last = [], 0
        spans = sorted([(m.start(), m.end(), self._link(m.group())) for m in _URL.finditer(text)]
                       + [(m.start(), m.end(), self._tag(m.group(1)))
                          for m in _HASHTAG.finditer(text)])
        for start, end, anchor in spans:
            if start < last:
                continue                                  # a hashtag inside a link
            parts += [_h(text[last:start]), anchor]
            last = end
        parts.append(_h(text[last:]))
        paragraphs = re.split(r"\n\s*\n", "".join(parts).strip())
        return "".join(f"<p>{p.replace(chr(10), '<br />')}</p>" for p in paragraphs)

    def _link(self, url: str) -> str:
        prefix = re.match(r"https?://(www\.)?", url).group()          # type: ignore[union-attr]
        shown, rest = url[len(prefix):len(prefix) + 30], url[len(prefix) + 30:]
        return (f'<a href="{_h(url)}" target="_blank" rel="nofollow noopener noreferrer">'
                f'<span class="invisible">{_h(prefix)}</span>'
                f'<span class="{"ellipsis" if rest else ""}">{_h(shown)}</span>'
                f'<span class="invisible">{_h(rest)}</span></a>')

    def _tag(self, name: str) -> str:
        return (f'<a href="{self.url}/tags/{name.lower()}" class="mention hashtag" '
                f'rel="tag">#<span>{_h(name)}</span></a>')


def _h(text: str) -> str:
    """ERB::Util.h."""
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&#39;"))
