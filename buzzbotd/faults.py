"""Test-only fault hook: make one part of the daemon hang, to prove the watchdog.

`BUZZBOTD_TEST_HANG=<part>:<seconds>[:<for>]` makes <part> ("loop", "scheduler"
or "db") block <seconds> after start, forever or for <for> seconds (once). It
is read from the environment only, never from the config file, and the daemon
logs a warning when it is set, so it cannot be switched on by accident
through configuration.
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
_hung = False


def hang_after(part: str) -> float | None:
    """Seconds after start at which `part` must hang, or None."""
    spec = os.environ.get(ENV, "")
    name, _, after = spec.partition(":")
    after = after.partition(":")[0]
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
    global _hung
    after = hang_after(part)
    if after is not None and not _hung and time.monotonic() - _started >= after:
        length = os.environ.get(ENV, "").split(":")[2:] or [""]
        log.warning("test fault hook: %s hangs now%s", part,
                    f" for {length[0]}s" if length[0] else "")
        if length[0]:
            _hung = True        # one hang of that length, then the part works again
        threading.Event().wait(float(length[0]) if length[0] else None)
