"""The X API client: tweepy's v2 Client pointed at `x.api_base`, and what one
request came to, behind the two calls a network offers the poster.

`XNetwork.post(text)` maps every answer to one POST (or its absence) to an
outcome the poster acts on: Posted; NotSent (surely no tweet: 5xx, 429 with
its reset, no connection made); Duplicate (X's 403 "duplicate content");
Unknown (timeout, dropped connection: it may have reached X); Refused (401,
400, 402 credits, 429 monthly usage cap, any other 403: no retry helps).
`XNetwork.find(text, since)` reads the account's recent tweets for a text,
which settles an unknown outcome; X may refuse it (ReadRefused: the app's
plan, no credits, a 429). Every request is counted by kind and priced: X
charges per post created and per post read (pay-per-use, 2026).

The account id is the access token's prefix (`<user id>-…`): asking X
(`GET /2/users/me`) is a paid read.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
import tweepy

from buzzbotd import template
from buzzbotd.config import XSettings
from buzzbotd.ops.metrics import METRICS

TWEEPY_HOST = "https://api.twitter.com"   # hard-coded in tweepy.Client.request
REQUEST_TIMEOUT_S = 10.0
TIMELINE_MAX_RESULTS = 20
# Words X's problem bodies carry (see tests/fakes/x.py for the bodies and their sources).
CREDITS_DEPLETED = "CreditsDepleted"
USAGE_CAP = "UsageCapExceeded"
NOT_ENROLLED = "client-not-enrolled"
# What a failed timeline read raises (X's errors, or no answer at all).
READ_ERRORS = (tweepy.TweepyException, requests.RequestException)


class _RebasedSession(requests.Session):
    """Sends tweepy's requests to `api_base` instead of its hard-coded host,
    with a timeout (tweepy sets none)."""

    def __init__(self, api_base: str, timeout_s: float) -> None:
        super().__init__()
        self.api_base = api_base.rstrip("/")
        self.timeout_s = timeout_s

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        if url.startswith(TWEEPY_HOST):
            url = self.api_base + url[len(TWEEPY_HOST):]
        kwargs.setdefault("timeout", self.timeout_s)
        return super().request(method, url, *args, **kwargs)


class XClient(tweepy.Client):
    """tweepy's v2 Client, OAuth 1.0a user context, pointed at `x.api_base`."""

    def __init__(self, x: XSettings, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        super().__init__(consumer_key=x.consumer_key.reveal(),
                         consumer_secret=x.consumer_secret.reveal(),
                         access_token=x.access_token.reveal(),
                         access_token_secret=x.access_token_secret.reveal(),
                         return_type=dict, wait_on_rate_limit=False)
        self.session = _RebasedSession(x.api_base, timeout_s)


# What one POST attempt came to.
@dataclass(frozen=True)
class Posted:
    tweet_id: str | None
    how: str


@dataclass(frozen=True)
class NotSent:           # surely no tweet: retry (not before `not_before`, if given)
    reason: str
    not_before: datetime | None = None
    status: int | None = None       # X's HTTP status, if it answered


@dataclass(frozen=True)
class Duplicate:         # X refused the text as a duplicate of a tweet it holds
    reason: str


@dataclass(frozen=True)
class Unknown:           # may or may not have reached X: settle before retrying
    reason: str


@dataclass(frozen=True)
class Refused:           # X said no for good (401, 400, 402, a usage cap, any other 403)
    reason: str


Outcome = Posted | Duplicate | NotSent | Unknown | Refused


class ReadRefused(Exception):
    """X will not let this app read the timeline: its plan (403 client-not-enrolled),
    no credits (402), or a 429 resetting at `reset`."""

    def __init__(self, reason: str, reset: datetime | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reset = reset


class XNetwork:
    """X as the poster sees it: `post` and `find` (the two calls a network offers).
    Each request is counted in buzzbotd_x_requests_total{kind} and reported to
    `on_request(kind, usd)` with what X charges for it (an estimate: X's bill is
    the truth): a post when created, a read per post it returns."""

    name = "x"

    def __init__(self, settings: XSettings, client: tweepy.Client | None = None,
                 on_request: Callable[[str, float], None] | None = None) -> None:
        self.settings = settings
        self.client = client or XClient(settings)
        self.on_request = on_request or (lambda kind, usd: None)
        self._user_id = account_id(settings.access_token.reveal())

    def post_cost(self, text: str) -> float:
        """What X charges for `text` once posted (more with a URL, since 2026-04-20)."""
        if template.has_url(text):
            return self.settings.price_post_with_url_usd
        return self.settings.price_post_usd

    def post(self, text: str) -> Outcome:
        outcome = create_tweet(self.client, text)
        self._count("post", self.post_cost(text) if isinstance(outcome, Posted) else 0.0)
        return outcome

    def find(self, text: str, since: datetime) -> list[str]:
        """The ids of the account's tweets of `text` since `since`, newest first
        (more than one when a /tweet in a slot's own second worded the same text);
        raises ReadRefused or READ_ERRORS."""
        if self._user_id is None:
            # A token not of the form `<id>-…` (never seen from X): one paid read.
            self._count("user", self.settings.price_read_usd)
            self._user_id = _checked_read(lambda: str(
                self.client.get_me(user_auth=True)["data"]["id"]))
        try:
            answer = _checked_read(lambda: self.client.get_users_tweets(
                self._user_id, user_auth=True, max_results=TIMELINE_MAX_RESULTS,
                tweet_fields=["entities", "created_at"],
                start_time=since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")))
        except Exception:
            self._count("read", 0.0)
            raise
        tweets = answer.get("data") or []
        self._count("read", self.settings.price_read_usd * len(tweets))
        return [str(tweet["id"]) for tweet in tweets if as_posted(tweet) == text]

    def _count(self, kind: str, usd: float) -> None:
        METRICS.inc("x_requests_total", label=kind)
        self.on_request(kind, usd)


def account_id(access_token: str) -> str | None:
    """The account's id from its OAuth 1.0a access token (`<user id>-<secret part>`)."""
    head, dash, _ = access_token.partition("-")
    return head if dash and head.isdigit() else None


def as_posted(tweet: dict[str, Any]) -> str:
    """A timeline tweet's text as it was posted: X returns each URL as its t.co
    link (the original in `entities.urls[].expanded_url`) and `& < >` escaped."""
    text = tweet.get("text") or ""
    for url in (tweet.get("entities") or {}).get("urls") or []:
        if url.get("url") and url.get("expanded_url"):
            text = text.replace(url["url"], url["expanded_url"])
    return html.unescape(text)


def create_tweet(client: tweepy.Client, text: str) -> Outcome:
    """One POST of `text`, and what it came to; X's answers never raise."""
    try:
        answer = client.create_tweet(text=text, user_auth=True)
    except tweepy.TooManyRequests as e:
        if _problem_title(e.response) == USAGE_CAP:
            return Refused(f"{problem(e.response)}: the app's monthly usage cap on X is "
                           "reached; raise it in the developer console, or wait for the month")
        return NotSent(problem(e.response), _rate_limit_reset(e.response), 429)
    except tweepy.TwitterServerError as e:
        return NotSent(problem(e.response), status=e.response.status_code)
    except tweepy.Forbidden as e:
        if any("duplicate" in m.lower() for m in e.api_messages):
            return Duplicate("X refused the text as a duplicate")
        return Refused(problem(e.response))
    except tweepy.HTTPException as e:
        if e.response.status_code == 402:
            return Refused(f"{problem(e.response)}: the X app has no credits left; buy "
                           "credits (or turn on auto-recharge) in the developer console")
        return Refused(problem(e.response))
    except requests.RequestException as e:
        if _surely_not_sent(e):
            return NotSent(f"cannot connect: {type(e).__name__}")
        return Unknown(f"no answer: {type(e).__name__}")
    return Posted(str(answer["data"]["id"]), "created")


def problem(response: requests.Response) -> str:
    """X's answer as a reason: status, and the problem's title and detail as X
    wrote them (e.g. "402 CreditsDepleted: Your enrolled account does not have any
    credits")."""
    body = _body(response)
    title = str(body.get("title") or response.reason or "")
    detail = str(body.get("detail") or "")
    if not detail and isinstance(body.get("errors"), list) and body["errors"]:
        detail = "; ".join(str(e.get("message") or e.get("detail") or "")
                           for e in body["errors"] if isinstance(e, dict))
    words = f"{response.status_code} {title}".strip()
    return f"{words}: {detail}" if detail and detail != title else words


def _checked_read(read: Callable[[], Any]) -> Any:
    """A timeline read; X's refusals of the app (not of this moment) → ReadRefused."""
    try:
        return read()
    except tweepy.TooManyRequests as e:
        raise ReadRefused(problem(e.response), _rate_limit_reset(e.response)) from e
    except tweepy.HTTPException as e:
        status = e.response.status_code
        if status == 402 or (status == 403 and _body(e.response).get("reason") == NOT_ENROLLED):
            raise ReadRefused(problem(e.response)) from e
        raise


def _body(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _problem_title(response: requests.Response) -> str:
    return str(_body(response).get("title") or "")


def _rate_limit_reset(response: requests.Response) -> datetime | None:
    """When X lets us post again: the window reset, or the 24-hour reset when
    that quota is what ran out (the pre-2026 plans; pay-per-use sends only
    x-rate-limit-*)."""
    headers = response.headers
    resets = [headers.get("x-rate-limit-reset")]
    for scope in ("user", "app"):
        if headers.get(f"x-{scope}-limit-24hour-remaining") == "0":
            resets.append(headers.get(f"x-{scope}-limit-24hour-reset"))
    epochs = [int(r) for r in resets if r and r.isdigit()]
    return datetime.fromtimestamp(max(epochs) + 1, UTC) if epochs else None


def _surely_not_sent(error: requests.RequestException) -> bool:
    """True when the request cannot have reached X (no connection was made)."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    if isinstance(error, requests.ConnectionError):
        text = repr(error)
        return "NewConnectionError" in text or "NameResolutionError" in text
    return False
