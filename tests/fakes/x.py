"""A stand-in for the X API v2, as much of it as buzzbotd uses.

  POST /2/tweets            stores the tweet; 403 "duplicate content" for a
                            text the account already posted (as X does); a
                            201 carries only x-rate-limit-* headers (pay-per-use)
  GET  /2/users/me          the account (a paid read: counted in `users_me`)
  GET  /2/users/:id/tweets  its recent tweets, newest first, as X returns
                            them: every URL a t.co link, `&` `<` `>` escaped,
                            the original URL in entities.urls[].expanded_url
                            when asked for (tweet.fields=entities)

Every request must carry an OAuth 1.0a user-context header for the
configured consumer key and access token, or gets 401. One-off faults come
from FakeAPI (503, 429 with reset headers, hangs, dropped connections, each
optionally after the tweet was stored); the plan's answers are knobs that hold
until changed: `refuse_reads` (403 client-not-enrolled, 402, a 429) and
`refuse_posts` (402 CreditsDepleted, 429 UsageCapExceeded, 503 to every post).
Each body is X's as a real app logged it or X's docs show it (source beside it).
"""

from __future__ import annotations

import html
import itertools
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.fakes.base import FakeAPI, Fault, Request, Response

POST_TWEET = "POST /2/tweets"
USER_ID = "4242"
DUPLICATE = {"detail": "You are not allowed to create a Tweet with duplicate content.",
             "type": "about:blank", "title": "Forbidden", "status": 403}
# X's access tokens are "<user id>-<random>": the daemon takes the account id from it.
CREDENTIALS = {"consumer_key": "test-consumer-key", "consumer_secret": "test-consumer-secret",
               "access_token": f"{USER_ID}-test-access-token",
               "access_token_secret": "test-token-secret"}

# An app outside the pay-per-use package, on a read: the body a real app logged
# against X API v2 in 2026 (a 403 on GET /2/chat/media, quoted in its README; the
# same keys, with "Standard Basic", in a 2022 log of GET /2/tweets), and X's Labs
# docs' "Client Forbidden" example.
NOT_ENROLLED = {
    "client_id": "28907132",
    "detail": "When authenticating requests to the Twitter API v2 endpoints, you must use keys "
              "and tokens from a Twitter developer App that is attached to a Project. You can "
              "create a project via the developer portal.",
    "registration_url": "https://developer.twitter.com/en/docs/projects/overview",
    "title": "Client Forbidden",
    "required_enrollment": "Appropriate Level of API Access",
    "reason": "client-not-enrolled",
    "type": "https://api.twitter.com/2/problems/client-forbidden",
}
# No credits left (402): as quoted in issue 22 from a real app's log; the same
# title and detail appear in logged answers to POST /2/tweets in public code
# ("402 CreditsDepleted", '{"title":"CreditsDepleted","detail":"Your enrolled
# account does not have any credits"}').
CREDITS_DEPLETED = {"title": "CreditsDepleted",
                    "detail": "Your enrolled account does not have any credits",
                    "type": "https://api.x.com/2/problems/credits"}
# The monthly cap (429 while the 15-minute window is not exhausted):
# xdevplatform/xdk issue #25 (2026-02-07), body and headers as X sent them.
USAGE_CAPPED = {"account_id": "1234567890", "product_name": "standard-basic",
                "title": "UsageCapExceeded", "period": "Monthly", "scope": "Product",
                "detail": "Usage cap exceeded: Monthly product cap",
                "type": "https://api.twitter.com/2/problems/usage-capped"}
USAGE_CAPPED_HEADERS = {"x-rate-limit-limit": "40000", "x-rate-limit-remaining": "39999"}
# A legacy Free app's every POST since late February 2026: tweepy issue #2237
# ("503 Service Unavailable / Service Unavailable"), the body as issue 22 quotes it.
LEGACY_503 = {"title": "Service Unavailable", "detail": "Service Unavailable",
              "type": "about:blank", "status": 503}
# t.co links as X returns them in timelines: tweepy's recorded cassette
# cassettes/test_client_get_users_tweets.yaml ("… https://t.co/3OQ4eGsUku").
URL = re.compile(r"https?://[^\s<>\"]+", re.IGNORECASE)


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
        # The plan's answers, held until changed (None: X answers normally).
        self.refuse_reads: Response | None = None
        self.refuse_posts: Response | None = None
        self.window_reset_s = 900              # X's 15-minute windows

    # -- the plan's refusals, as X words them -------------------------------------

    @staticmethod
    def not_enrolled() -> Response:
        return Response(403, NOT_ENROLLED)

    @staticmethod
    def credits_depleted() -> Response:
        return Response(402, CREDITS_DEPLETED)

    @staticmethod
    def usage_capped() -> Response:
        return Response(429, USAGE_CAPPED, dict(USAGE_CAPPED_HEADERS))

    @staticmethod
    def legacy_503() -> Response:
        return Response(503, LEGACY_503)

    @staticmethod
    def read_rate_limited(reset_at: float) -> Response:
        return Response(429, {"title": "Too Many Requests", "detail": "Too Many Requests",
                              "type": "about:blank", "status": 429},
                        {"x-rate-limit-limit": "1", "x-rate-limit-remaining": "0",
                         "x-rate-limit-reset": str(int(reset_at))})

    @property
    def users_me(self) -> int:
        return sum(1 for r in self.requests if r.path.startswith("/2/users/me"))

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
            return self.refuse_posts or self._create(request)
        if route.startswith("GET ") and self.refuse_reads is not None:
            return self.refuse_reads
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
        # Pay-per-use: the 15-minute window only, no x-*-limit-24hour-* (issue 22).
        return Response(201, {"data": {"id": tweet.id, "text": tweet.text,
                                       "edit_history_tweet_ids": [tweet.id]}},
                        {"x-rate-limit-limit": "100", "x-rate-limit-remaining": "99",
                         "x-rate-limit-reset": str(int(time.time()) + self.window_reset_s)})

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
        fields = ",".join(request.query.get("tweet.fields", [])).split(",")
        return Response(200, {
            "data": [self._as_returned(t, "entities" in fields) for t in tweets],
            "meta": {"result_count": len(tweets), "newest_id": tweets[0].id,
                     "oldest_id": tweets[-1].id},
        })

    def _as_returned(self, tweet: Tweet, entities: bool) -> dict[str, Any]:
        """A tweet as the timeline returns it: URLs → t.co links, then & < > escaped."""
        text, urls = tweet.text, []
        for n, match in enumerate(URL.finditer(tweet.text)):
            short = f"https://t.co/{int(tweet.id) % 10**8:08d}{n:02d}"
            urls.append({"url": short, "expanded_url": match.group(),
                         "display_url": match.group().split("://", 1)[1][:26]})
            text = text.replace(match.group(), short, 1)
        start = 0
        for url in urls:               # X's indices: code points of the unescaped text
            url["start"] = text.index(url["url"], start)
            url["end"] = start = url["start"] + len(url["url"])
        answer: dict[str, Any] = {
            "id": tweet.id, "text": html.escape(text, quote=False),
            "created_at": tweet.created_at.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "edit_history_tweet_ids": [tweet.id]}
        if entities and urls:
            answer["entities"] = {"urls": urls}
        return answer
