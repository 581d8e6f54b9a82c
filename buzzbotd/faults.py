"""Test-only fault hooks: make one part of the daemon hang, to prove the watchdog,
or make one database write fail, to prove what happens then.

`BUZZBOTD_TEST_HANG=<part>:<seconds>` makes <part> ("loop", "scheduler" or
"db") block forever <seconds> after start. It is read from the environment
only, never from the config file, and the daemon logs a warning when it is
set, so it cannot be switched on by accident through configuration.

`BUZZBOTD_TEST_FAIL=<point>:<count>` makes the first <count> calls of <point>
(e.g. "mark_sent", a reminder's write after Telegram accepted it) raise the
error SQLite gives for a failed write. Read the same way, warned about the same way.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time

ENV = "BUZZBOTD_TEST_HANG"
FAIL_ENV = "BUZZBOTD_TEST_FAIL"
PARTS = ("loop", "scheduler", "db")
log = logging.getLogger("buzzbotd.faults")
_started = time.monotonic()
_failed: dict[str, int] = {}            # point → calls failed so far
_failed_lock = threading.Lock()


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
    if os.environ.get(FAIL_ENV):
        log.warning("test fault hook %s=%s is set: a database write will fail on purpose",
                    FAIL_ENV, os.environ[FAIL_ENV])


def maybe_hang(part: str) -> None:
    """Called from `part`'s own loop; blocks forever once its time has come."""
    after = hang_after(part)
    if after is not None and time.monotonic() - _started >= after:
        log.warning("test fault hook: %s hangs now", part)
        threading.Event().wait()


def maybe_fail(point: str) -> None:
    """Called at the start of `point`; raises while its failures are not used up."""
    name, _, count = os.environ.get(FAIL_ENV, "").partition(":")
    if name != point:
        return
    with _failed_lock:
        done = _failed.get(point, 0)
        if not count.isdigit() or done >= int(count):
            return
        _failed[point] = done + 1
    log.warning("test fault hook: %s fails now (%d of %s)", point, done + 1, count)
    raise sqlite3.OperationalError("disk I/O error (test fault hook)")


def reset() -> None:
    """Tests in one process: the failure counts start again."""
    with _failed_lock:
        _failed.clear()
