"""The daemon's wall clock: UTC instants, whether they can be trusted, and a
test-only way to move them.

Everything that schedules, records or compares times takes a `clock`
(a function returning an aware UTC datetime); `utc_now` is the real one. The
host's TZ never matters: nothing here (or in the scheduler) reads local time.

A Raspberry Pi has no real-time clock: until NTP has set it, it reads 1970
or whatever fake-hwclock saved at the last shutdown. A reading earlier than
this package's build date cannot be right, so the daemon waits (`is_sane`)
before it posts, sends, skips or records anything. The build date is the
date of the newest debian/changelog entry: debian/rules writes it into
buzzbotd/_build.py (from SOURCE_DATE_EPOCH, which dpkg takes from that
entry); a source checkout reads debian/changelog itself; anything else falls
back to FALLBACK_BUILD_DATE.

For tests only: `BUZZBOTD_TEST_CLOCK` (read from the environment, never from
the config; the daemon logs a warning when it is set) shifts the clock:
  BUZZBOTD_TEST_CLOCK=-3600                 the real clock minus an hour
  BUZZBOTD_TEST_CLOCK=2026-10-25T00:59:40Z  reads that instant at start, then runs on
  BUZZBOTD_TEST_CLOCK=file:/path            the file holds one of the two forms above
                                            and is read again whenever it changes: a
                                            test steps the clock by rewriting it
  BUZZBOTD_TEST_CLOCK=+90@2,-3@5            steps: 90 s ahead from 2 s after start,
                                            3 s behind from 5 s after start (the
                                            kill -9 trials jump it mid-run this way)
"""

from __future__ import annotations

import email.utils
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

log = logging.getLogger("buzzbotd.clock")
ENV = "BUZZBOTD_TEST_CLOCK"
FALLBACK_BUILD_DATE = datetime(2026, 11, 23, tzinfo=UTC)
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


# -- the build date --------------------------------------------------------------


def build_date() -> datetime:
    """The package's build date (see the module's doc), an aware UTC datetime."""
    try:
        from buzzbotd import _build  # type: ignore[attr-defined]  # written by debian/rules
        return datetime.fromtimestamp(int(_build.BUILD_EPOCH), UTC)
    except ImportError:
        pass
    changelog = Path(__file__).resolve().parent.parent / "debian" / "changelog"
    try:
        return _changelog_date(changelog.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return FALLBACK_BUILD_DATE


def _changelog_date(text: str) -> datetime:
    """The date of the first (newest) entry: its ' -- name <mail>  date' line."""
    for line in text.splitlines():
        if line.startswith(" -- "):
            parsed = email.utils.parsedate_to_datetime(line.split(">", 1)[1].strip())
            return parsed.astimezone(UTC)
    raise ValueError("no trailer line in debian/changelog")


def is_sane(now: datetime, built: datetime) -> bool:
    """A clock earlier than the build date is surely unsynchronised."""
    return now >= built


# -- the test knob -----------------------------------------------------------------


class ShiftedClock:
    """The real clock moved by an offset that a test controls (see the module's doc)."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self._lock = threading.Lock()
        self._path = Path(spec[len("file:"):]) if spec.startswith("file:") else None
        self._stamp: tuple[int, int, int] | None = None
        self._offset = timedelta(0)
        self._started = time.monotonic()
        self._steps: list[tuple[float, timedelta]] = []     # (seconds after start, offset)
        if self._path is not None:
            self._reload()
        elif "@" in spec:
            self._steps = sorted(_step(part) for part in spec.split(","))
        else:
            self._offset = _offset(spec)

    def __call__(self) -> datetime:
        if self._path is not None:
            self._reload()
        elif self._steps:
            elapsed = time.monotonic() - self._started
            return utc_now() + next((offset for after, offset in reversed(self._steps)
                                     if elapsed >= after), timedelta(0))
        return utc_now() + self._offset

    def _reload(self) -> None:
        assert self._path is not None
        try:
            st = self._path.stat()
        except OSError:
            return                                   # keep the last offset
        # A test rewrites the file by rename (a new inode) and may do so twice within
        # one tick of the file system's timestamps.
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._lock:
            if stamp == self._stamp:
                return
            try:
                offset = _offset(self._path.read_text().strip())
            except (OSError, ValueError):
                return                               # half-written: read again next call
            self._stamp, self._offset = stamp, offset
        log.warning("test clock %s: now %s", self._path, (utc_now() + offset).isoformat())


def _step(text: str) -> tuple[float, timedelta]:
    """'+90@2' → (2.0, 90 s)."""
    offset, _, after = text.partition("@")
    return float(after or 0), timedelta(seconds=float(offset))


def _offset(text: str) -> timedelta:
    """'-3600' → that many seconds; an ISO instant → the offset that makes now read it."""
    try:
        return timedelta(seconds=float(text))
    except ValueError:
        pass
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        raise ValueError(f"{ENV}: {text!r} has no UTC offset")
    return when - utc_now()


def from_environment(environ: dict[str, str] | None = None) -> Clock:
    """The real clock, or the test clock if BUZZBOTD_TEST_CLOCK is set."""
    spec = (os.environ if environ is None else environ).get(ENV, "")
    if not spec:
        return utc_now
    clock = ShiftedClock(spec)
    log.warning("test clock hook %s=%s is set: the daemon's clock reads %s, not the "
                "host's time", ENV, spec, clock().isoformat())
    return clock
