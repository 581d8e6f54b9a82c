"""Test-only fault hooks: make one part of the daemon hang, to prove the
watchdog; shift the daemon's clock, to prove what a clock jump does.

`BUZZBOTD_TEST_HANG=<part>:<seconds>` makes <part> ("loop", "scheduler" or
"db") block forever <seconds> after start.
`BUZZBOTD_TEST_CLOCK=<offset>@<after>[,<offset>@<after>…]` makes the daemon's
clock (the `clock` every part is given) read the real UTC time plus <offset>
seconds from <after> seconds after start on (e.g. `+90@2,-3@5`: 90 s ahead
from 2 s after start, 3 s behind from 5 s after start).
Both are read from the environment only, never from the config file, and the
daemon logs a warning when one is set, so neither can be switched on by
accident through configuration.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

ENV = "BUZZBOTD_TEST_HANG"
CLOCK_ENV = "BUZZBOTD_TEST_CLOCK"
PARTS = ("loop", "scheduler", "db")
log = logging.getLogger("buzzbotd.faults")
_started = time.monotonic()


def hang_after(part: str) -> float | None:
    """Seconds after start at which `part` must hang, or None."""
    spec = os.environ.get(ENV, "")
    name, _, after = spec.partition(":")
    if name != part:
        return None
    try:
        return float(after or 0)
    except ValueError:
        return None


def warn_if_set() -> None:
    if os.environ.get(ENV):
        log.warning("test fault hook %s=%s is set: a part will hang on purpose",
                    ENV, os.environ[ENV])
    if os.environ.get(CLOCK_ENV):
        log.warning("test fault hook %s=%s is set: the clock will be shifted on purpose%s",
                    CLOCK_ENV, os.environ[CLOCK_ENV],
                    "" if clock_steps() else " (unreadable: ignored)")


def clock_steps() -> list[tuple[float, float]]:
    """(seconds after start, offset in seconds) from BUZZBOTD_TEST_CLOCK; [] if
    unset or unreadable."""
    steps = []
    for part in filter(None, os.environ.get(CLOCK_ENV, "").split(",")):
        offset, _, after = part.partition("@")
        try:
            steps.append((float(after or 0), float(offset)))
        except ValueError:
            return []
    return sorted(steps)


def shifted(clock: Callable[[], datetime]) -> Callable[[], datetime]:
    """`clock`, shifted as BUZZBOTD_TEST_CLOCK says (itself when unset)."""
    steps = clock_steps()
    if not steps:
        return clock

    def shifted_clock() -> datetime:
        elapsed = time.monotonic() - _started
        offset = next((o for after, o in reversed(steps) if elapsed >= after), 0.0)
        return clock() + timedelta(seconds=offset)
    return shifted_clock


def maybe_hang(part: str) -> None:
    """Called from `part`'s own loop; blocks forever once its time has come."""
    after = hang_after(part)
    if after is not None and time.monotonic() - _started >= after:
        log.warning("test fault hook: %s hangs now", part)
        threading.Event().wait()
