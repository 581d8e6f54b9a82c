"""Test-only fault hook: make one part of the daemon hang, to prove the watchdog.

`BUZZBOTD_TEST_HANG=<part>:<seconds>` makes <part> ("loop", "scheduler" or
"db") block forever <seconds> after start. It is read from the environment
only, never from the config file, and the daemon logs a warning when it is
set, so it cannot be switched on by accident through configuration.
"""

from __future__ import annotations

import logging
import os
import threading
import time

ENV = "BUZZBOTD_TEST_HANG"
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


def maybe_hang(part: str) -> None:
    """Called from `part`'s own loop; blocks forever once its time has come."""
    after = hang_after(part)
    if after is not None and time.monotonic() - _started >= after:
        log.warning("test fault hook: %s hangs now", part)
        threading.Event().wait()
