"""A stand-in for the X API v2, as much of it as buzzbotd uses.

  POST /2/tweets            stores the tweet; 403 "duplicate content" for a
                            text the account already posted (as X does)
  GET  /2/users/me          the account
  GET  /2/users/:id/tweets  its recent tweets, newest first, `&` `<` `>`
                            HTML-escaped in the text as X returns them

Every request must carry an OAuth 1.0a user-context header for the
configured consumer key and access token, or gets 401. Faults come from
FakeAPI (503, 429 with reset headers, hangs, dropped connections, each
optionally after the tweet was stored).
"""

from __future__ import annotations

import html
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tests.fakes.base import FakeAPI, Fault, Request, Response

POST_TWEET = "POST /2/tweets"
USER_ID = "4242"
DUPLICATE = {"detail": "You are not allowed to create a Tweet with duplicate content.",
             "type": "about:blank", "title": "Forbidden", "status": 403}
CREDENTIALS = {"consumer_key": "test-consumer-key", "consumer_secret": "test-consumer-secret",
               "access_token": "test-access-token", "access_token_secret": "test-token-secret"}


@dataclass
class Tweet:
    id: str
    text: str
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))


class FakeX(FakeAPI):
    name = "x"

    def __init__(self, reject_duplicates: bool = True) -> None:
        super().__init__()
        self.reject_duplicates = reject_duplicates
        self.tweets: list[Tweet] = []
        self.on_store: Callable[[Tweet], None] | None = None   # e.g. kill -9 the daemon
        # Called with each POST /2/tweets before anything is stored (e.g. to hold it
        # back, read the daemon's database, or kill the daemon before X stores it).
        self.on_post: Callable[[Request], None] | None = None
        # What X stamps a tweet with (`created_at`, which the timeline's start_time
        # filters on): a test whose daemons run on a shifted clock sets that clock,
        # since X and a daemon share the real one.
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self._ids = itertools.count(1_800_000_000_000_000_001)
        self._store_lock = threading.Lock()

    @property
    def timeline_reads(self) -> int:
        return sum(1 for r in self.requests if r.path.startswith(f"/2/users/{USER_ID}/tweets"))

    @property
    def post_attempts(self) -> int:
        return sum(1 for r in self.requests if self.route(r) == POST_TWEET)

    def texts(self) -> list[str]:
        with self._store_lock:
            return [t.text for t in self.tweets]

    def rate_limited(self, reset_at: float, **kw: object) -> Fault:
        """A 429 as X sends it: the window's reset as epoch seconds."""
        reset = str(int(reset_at))
        return Fault.status_code(429, {"title": "Too Many Requests", "status": 429},
                                 {"x-rate-limit-limit": "100", "x-rate-limit-remaining": "0",
                                  "x-rate-limit-reset": reset}, **kw)

    def handle(self, request: Request) -> Response:
        if not self._authorised(request):
            return Response(401, {"title": "Unauthorized", "status": 401,
                                  "detail": "Unauthorized"})
        route = self.route(request)
        if route == POST_TWEET:
            return self._create(request)
        if route == "GET /2/users/me":
            return Response(200, {"data": {"id": USER_ID, "name": "Buzz", "username": "buzz"}})
        if route == f"GET /2/users/{USER_ID}/tweets":
            return self._timeline(request)
        return Response(404, {"title": "Not Found", "status": 404})

    def _authorised(self, request: Request) -> bool:
        auth = request.headers.get("Authorization", "")
        return (auth.startswith("OAuth ") and "oauth_signature=" in auth
                and f'oauth_consumer_key="{CREDENTIALS["consumer_key"]}"' in auth
                and f'oauth_token="{CREDENTIALS["access_token"]}"' in auth)

    def _create(self, request: Request) -> Response:
        text = (request.json() or {}).get("text")
        if not isinstance(text, str) or not text:
            return Response(400, {"title": "Invalid Request", "status": 400})
        if self.on_post is not None:
            self.on_post(request)
        with self._store_lock:
            if self.reject_duplicates and any(t.text == text for t in self.tweets):
                return Response(403, DUPLICATE)
            tweet = Tweet(str(next(self._ids)), text, self.clock())
            self.tweets.append(tweet)
        if self.on_store is not None:
            self.on_store(tweet)
        return Response(201, {"data": {"id": tweet.id, "text": tweet.text,
                                       "edit_history_tweet_ids": [tweet.id]}})

    def _timeline(self, request: Request) -> Response:
        limit = int(request.query.get("max_results", ["10"])[0])
        since = request.query.get("start_time", [None])[0]
        with self._store_lock:
            tweets = list(reversed(self.tweets))
        if since:
            start = datetime.fromisoformat(since.replace("Z", "+00:00"))
            tweets = [t for t in tweets if t.created_at >= start]
        tweets = tweets[:limit]
        if not tweets:
            return Response(200, {"meta": {"result_count": 0}})
        return Response(200, {
            "data": [{"id": t.id, "text": html.escape(t.text, quote=False),
                      "created_at": t.created_at.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                      "edit_history_tweet_ids": [t.id]} for t in tweets],
            "meta": {"result_count": len(tweets), "newest_id": tweets[0].id,
                     "oldest_id": tweets[-1].id},
        })
