"""The one retry policy: how long to wait before trying again.

Every client that retries (price, X and the other networks, Sheets, Telegram
sends) waits `wait_s(attempt, first_s, max_s, retry_after)`: an exponential
step (first_s, doubled after each failed attempt, at most max_s), half of it
fixed and half at random ("equal jitter"), so that clients that failed together
do not retry together, even at the cap; never less than what the server asked
for (`retry_after`, parsed once, here, by `retry_after_s`).
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def step(attempt: int, first_s: float, max_s: float = math.inf) -> float:
    """The wait after failed attempt number `attempt` (1, 2, …): first_s, 2·first_s,
    4·first_s… at most max_s. The exponent is bounded so a long run never overflows."""
    return min(first_s * 2.0 ** min(attempt - 1, 64), max_s)


def spread(seconds: float, rng: random.Random | None = None) -> float:
    """seconds/2 to seconds, at random: never a tight loop, never past the cap."""
    return seconds / 2 + (rng or random).uniform(0, seconds / 2)


def retry_after_s(value: str | float | None, now: datetime | None = None) -> float | None:
    """A server's Retry-After in seconds: delta-seconds ("120", "1.5") or an HTTP-date
    (RFC 9110 §10.2.3, read against `now`); None when absent, unreadable or not
    positive. Telegram's `retry_after` and X's reset, converted by the caller, come
    through here too."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        try:
            seconds = float(value.strip())
        except ValueError:
            try:
                when = parsedate_to_datetime(value)
            except (TypeError, ValueError, IndexError):
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return seconds if math.isfinite(seconds) and seconds > 0 else None


def wait_s(attempt: int, first_s: float, max_s: float = math.inf,
           retry_after: float | None = None, rng: random.Random | None = None) -> float:
    """The wait after failed attempt `attempt`: the spread step, or the server's
    Retry-After when that is longer (capped at max_s: a server asking for an hour
    does not park a slot's retry loop past its window)."""
    wait = spread(step(attempt, first_s, max_s), rng)
    if retry_after is not None:
        wait = max(wait, min(retry_after, max_s))
    return wait
