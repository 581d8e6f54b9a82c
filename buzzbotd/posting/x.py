"""The X API client: tweepy's v2 Client pointed at `x.api_base`, and what one
request came to.

`create_tweet` maps every answer to one POST (or its absence) to an outcome
that the poster acts on: Posted; NotSent (surely no tweet: 5xx, 429 with its
reset, no connection made); Duplicate (X's 403 "duplicate content"); Unknown
(timeout, dropped connection: it may have reached X); Refused (401, 400, any
other 403: no retry helps). `find_on_timeline` reads the account's recent
tweets for a text, which settles an unknown outcome; it costs money on X's
pay-per-use plan.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
import tweepy

from buzzbotd.config import XSettings

TWEEPY_HOST = "https://api.twitter.com"   # hard-coded in tweepy.Client.request
REQUEST_TIMEOUT_S = 10.0
TIMELINE_MAX_RESULTS = 20
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


@dataclass(frozen=True)
class Duplicate:         # X refused the text as a duplicate of a tweet it holds
    reason: str


@dataclass(frozen=True)
class Unknown:           # may or may not have reached X: settle before retrying
    reason: str


@dataclass(frozen=True)
class Refused:           # X said no for good (401, 400, a 403 other than duplicate)
    reason: str


Outcome = Posted | Duplicate | NotSent | Unknown | Refused


def create_tweet(client: tweepy.Client, text: str) -> Outcome:
    """One POST of `text`, and what it came to; X's answers never raise."""
    try:
        answer = client.create_tweet(text=text, user_auth=True)
    except tweepy.TooManyRequests as e:
        return NotSent("429 Too Many Requests", _rate_limit_reset(e.response))
    except tweepy.TwitterServerError as e:
        return NotSent(f"{e.response.status_code} from X")
    except tweepy.Forbidden as e:
        if any("duplicate" in m.lower() for m in e.api_messages):
            return Duplicate("X refused the text as a duplicate")
        return Refused(f"403 from X: {'; '.join(e.api_messages) or e}")
    except tweepy.HTTPException as e:
        return Refused(f"{e.response.status_code} from X: "
                       f"{'; '.join(e.api_messages) or e}")
    except requests.RequestException as e:
        if _surely_not_sent(e):
            return NotSent(f"cannot connect: {type(e).__name__}")
        return Unknown(f"no answer: {type(e).__name__}")
    return Posted(str(answer["data"]["id"]), "created")


def own_user_id(client: tweepy.Client) -> str:
    """The account's own id (the timeline is read by id); raises READ_ERRORS."""
    return str(client.get_me(user_auth=True)["data"]["id"])


def find_on_timeline(client: tweepy.Client, user_id: str, text: str, since: datetime
                     ) -> list[str]:
    """The ids of the account's tweets of `text` since `since`, newest first (more
    than one when a /tweet in a slot's own second worded the same text); raises
    READ_ERRORS."""
    answer = client.get_users_tweets(
        user_id, user_auth=True, max_results=TIMELINE_MAX_RESULTS,
        start_time=since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return [str(tweet["id"]) for tweet in answer.get("data") or []
            if html.unescape(tweet["text"]) == text]    # X escapes & < > in returned text


def _rate_limit_reset(response: requests.Response) -> datetime | None:
    """When X lets us post again: the window reset, or the 24-hour reset when
    that quota is what ran out."""
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

