"""How long to wait before trying again: one exponential step, two ways to spread it.

Every client that retries (X posts, price, Sheets, Telegram sends) waits
`step(attempt, first_s, max_s)`: first_s, doubled after each failed attempt,
never more than max_s. A client that shares a server with
other clients spreads its wait at random, so that those that failed together
do not retry together; which spread it uses is the client's own (unchanged)
choice.
"""

from __future__ import annotations

import math
import random


def step(attempt: int, first_s: float, max_s: float = math.inf) -> float:
    """The wait after failed attempt number `attempt` (1, 2, …): first_s, 2·first_s,
    4·first_s… at most max_s. The exponent is bounded so a long run never overflows."""
    return min(first_s * 2.0 ** min(attempt - 1, 64), max_s)


def up_to_half_more(seconds: float, rng: random.Random | None = None) -> float:
    """seconds to 1.5·seconds, at random (never shorter than the step)."""
    return seconds * (1 + (rng or random).random() / 2)


def equal_jitter(seconds: float, rng: random.Random | None = None) -> float:
    """Half the step fixed, half random: seconds/2 to seconds ("equal jitter")."""
    return seconds / 2 + (rng or random).uniform(0, seconds / 2)
