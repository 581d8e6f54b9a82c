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

A clock can also be sane and hours ahead: a Pi whose real-time clock keeps
local time boots 5 h 30 ahead in India, until NTP steps it back a minute
later. Whatever was called missed in that minute (a slot skipped, a reminder
moved to tomorrow) would be lost for good, so `TRUST` (a ClockTrust) holds
such decisions while the clock is suspect; see there.

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
A file's offset may be followed by the word "unsynchronised": the clock then says
it is not synchronised (as the kernel does before NTP has set it; see
`synchronised`), otherwise a test clock says it is.
"""

from __future__ import annotations

import ctypes
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
        self._synchronised = True
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

    def synchronised(self) -> bool:
        """What the test says of the clock's synchronisation (see the module's doc)."""
        if self._path is not None:
            self._reload()
        return self._synchronised

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
                words = self._path.read_text().split()
                offset = _offset(words[0])
            except (OSError, ValueError, IndexError):
                return                               # half-written: read again next call
            self._stamp, self._offset = stamp, offset
            self._synchronised = "unsynchronised" not in words[1:]
        log.warning("test clock %s: now %s%s", self._path, (utc_now() + offset).isoformat(),
                    "" if self._synchronised else ", not synchronised")


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


# -- whether "missed" may be decided ---------------------------------------------------

SUSPECT_AHEAD = timedelta(minutes=15)   # a start this far past the last heartbeat...
SUSPECT_FOR_S = 6 * 3600.0              # ...is suspect at most this long, unsettled
STEP_BACK = timedelta(seconds=30)       # a step back this large settles it
_STA_UNSYNC = 0x0040                    # <sys/timex.h>
_TIME_ERROR = 5                         # adjtimex's answer: the clock is not synchronised


class _Timex(ctypes.Structure):
    """struct timex, as far as `status`; room for the rest of it (and for 64-bit time_t)."""

    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long),
                ("status", ctypes.c_int), ("rest", ctypes.c_byte * 256)]


def kernel_synchronised() -> bool | None:
    """Whether the kernel says NTP (systemd-timesyncd, chrony, ntpd) has synchronised its
    clock: adjtimex(2) read only (modes 0, no privilege), as `timedatectl`'s
    NTPSynchronized reads it. None if it cannot be asked (not Linux)."""
    try:
        timex = _Timex()
        state = ctypes.CDLL(None, use_errno=True).adjtimex(ctypes.byref(timex))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != _TIME_ERROR and not timex.status & _STA_UNSYNC


def synchronised(clock: Clock) -> bool | None:
    """`clock`'s own answer (a test clock's), else the kernel's."""
    probe = getattr(clock, "synchronised", None)
    return probe() if probe is not None else kernel_synchronised()


class ClockTrust:
    """Whether a slot or a reminder may be called missed now: the slot skipped, the
    reminder moved to its next day, for good.

    A start whose clock reads more than SUSPECT_AHEAD past the database's last
    heartbeat, while the clock is not known to be synchronised, is suspect: the
    daemon may have been down that long, or its clock may be hours ahead. Until NTP
    synchronises the clock, the clock steps back, or SUSPECT_FOR_S pass, nothing is
    called missed: what looks late stays due, and once the clock is right it is
    either still to come (posted, sent at its time) or late indeed (missed then).
    What is within its window is posted and sent meanwhile, as always."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clock: Clock = utc_now
        self._suspect: tuple[float, datetime] | None = None     # (monotonic, wall) then

    def opened(self, clock: Clock, last_heartbeat: datetime | None) -> None:
        """At the start of work, with the last heartbeat the database holds."""
        now = clock()
        with self._lock:
            self._clock, self._suspect = clock, None
        if last_heartbeat is None or now - last_heartbeat <= SUSPECT_AHEAD:
            return
        if synchronised(clock):
            return
        with self._lock:
            self._suspect = (time.monotonic(), now)
        log.warning("the clock reads %s, %s after the last heartbeat (%s), and is not known "
                    "to be synchronised: it may be ahead (a real-time clock kept in local "
                    "time?); no slot or reminder is called missed until NTP synchronises it "
                    "or it steps back", _text(now), now - last_heartbeat, _text(last_heartbeat))

    def may_call_missed(self) -> bool:
        with self._lock:
            suspect = self._suspect
        if suspect is None:
            return True
        elapsed = time.monotonic() - suspect[0]
        now = self._clock()
        if now - suspect[1] < timedelta(seconds=elapsed) - STEP_BACK:
            reason = "it stepped back"
        elif synchronised(self._clock):
            reason = "NTP synchronised it"
        elif elapsed > SUSPECT_FOR_S:
            reason = f"nothing settled it in {elapsed / 3600:.0f} h"
        else:
            return False
        with self._lock:
            self._suspect = None
        log.warning("the clock is trusted again (%s): it reads %s; what is late from now on "
                    "is called missed", reason, _text(now))
        return True


def _text(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# The daemon's one: opened at the start of work, asked by the poster and the due round.
TRUST = ClockTrust()
