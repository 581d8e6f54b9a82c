"""What one attempt to post on a network (other than X, see x.py) came to, and
the parts of reading an HTTP answer that the network clients share.

Every client (bluesky.py, mastodon.py) answers `post` and `settle` with one of:
  Posted    the post exists (created now, or found after an unknown outcome)
  NotSent   surely no post: a retry is safe (not before `not_before`, if given)
  Unknown   it may or may not exist: settle it before anything else
  Failed    the network said no for good; `config_key` names what to fix
and never raises for anything a network answers or fails to answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import httpx

from buzzbotd import __version__, retry
from buzzbotd.runtime import tls

REQUEST_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Posted:
    id: str            # the network's own name for the post (an at:// URI, a status id)
    url: str           # where a person sees it
    how: str           # "created", or how an unknown outcome was settled


@dataclass(frozen=True)
class NotSent:
    reason: str
    not_before: datetime | None = None


@dataclass(frozen=True)
class Unknown:
    reason: str


@dataclass(frozen=True)
class Failed:
    reason: str
    config_key: str | None = None    # e.g. "bluesky.app_password": what the operator fixes


Outcome = Posted | NotSent | Unknown | Failed


class CredentialsRefused(Exception):
    """The network refused our login or token; the message names the config key
    (never its value)."""

    def __init__(self, message: str, config_key: str) -> None:
        super().__init__(message)
        self.config_key = config_key

    def outcome(self) -> Failed:
        return Failed(str(self), self.config_key)


class NetworkClient(Protocol):
    """What the poster drives, per network."""

    network: str

    def post(self, key: str, text: str) -> Outcome:
        """One attempt to post `text` as slot `key`'s post."""
        ...

    def settle(self, key: str, text: str, first_sent_at: datetime) -> Outcome:
        """After an unknown outcome of posting `text` for `key`, whose first POST
        went out at `first_sent_at`: Posted if the post exists, NotSent if it surely
        does not (a retry is safe), Unknown if that cannot be told yet."""
        ...

    def close(self) -> None:
        ...


def http_client(timeout_s: float) -> httpx.Client:
    """An httpx client as every network client uses it."""
    return httpx.Client(timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, CONNECT_TIMEOUT_S)),
                        verify=tls.context(), headers={"User-Agent": f"buzzbotd/{__version__}"})


def transport_outcome(error: httpx.TransportError, network: str) -> NotSent | Unknown:
    """A request without an answer: surely not sent if no connection was made,
    else unknown (it may have reached the network)."""
    if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return NotSent(f"cannot connect to {network}: {type(error).__name__}")
    return Unknown(f"no answer from {network}: {type(error).__name__}")


def not_before(seconds: float | str | None, now: datetime) -> datetime | None:
    """When a rate-limited network lets us try again: `seconds` from now, read by
    the one retry policy (retry.retry_after_s); None when absent or past."""
    wait = retry.retry_after_s(seconds, now)
    return now + timedelta(seconds=wait) if wait is not None else None


def error_of(response: httpx.Response) -> tuple[str, str]:
    """An error answer's (name, message): XRPC's {"error", "message"}, Mastodon's
    {"error"} (its message), or the reason phrase when the body is neither."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        message = body.get("message")
        return body["error"], message if isinstance(message, str) else body["error"]
    return response.reason_phrase, response.reason_phrase
