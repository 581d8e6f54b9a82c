"""Test-only fault hooks: make one part of the daemon hang, to prove the watchdog,
or make one database write fail, to prove what happens then.

`BUZZBOTD_TEST_HANG=<part>:<seconds>[:<for>]` makes <part> ("loop", "scheduler"
or "db") block <seconds> after start, forever or for <for> seconds (once). It
is read from the environment only, never from the config file, and the daemon
logs a warning when it is set, so it cannot be switched on by accident
through configuration.

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
    if os.environ.get(FAIL_ENV):
        log.warning("test fault hook %s=%s is set: a database write will fail on purpose",
                    FAIL_ENV, os.environ[FAIL_ENV])


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
