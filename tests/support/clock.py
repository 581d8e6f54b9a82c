"""The clocks a test moves: `ManualClock` for code run in-process (it reads what
the test set, nothing else), `FileClock` for a daemon process (buzzbotd/clock.py's
BUZZBOTD_TEST_CLOCK=file:path: the real clock plus an offset the test moves)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Generic, TypeVar

Instant = TypeVar("Instant", datetime, float)


class ManualClock(Generic[Instant]):
    """A clock injected into code under test (`clock=`): calling it returns `now`,
    which only the test changes (`clock.now += …`). A datetime for the scheduler,
    poster and ledger; epoch seconds where the code takes a float (metrics, alerts)."""

    def __init__(self, now: Instant) -> None:
        self.now: Instant = now

    def __call__(self) -> Instant:
        return self.now


class FileClock:
    """A daemon's clock under test (BUZZBOTD_TEST_CLOCK=file:path, buzzbotd/clock.py):
    the real clock plus an offset that the test moves; the daemon reads the file
    again whenever it changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.set_offset(0.0)

    @property
    def env(self) -> dict[str, str]:
        return {"BUZZBOTD_TEST_CLOCK": f"file:{self.path}"}

    def set_offset(self, seconds: float) -> None:
        text = f"{seconds:.6f}"
        self.offset = float(text)            # exactly what the daemon reads
        part = self.path.with_suffix(".part")
        part.write_text(text + "\n")
        os.replace(part, self.path)          # never read half-written

    def move_to(self, instant: datetime) -> float:
        """Makes the clock read `instant` now and run on from it; returns the offset."""
        self.set_offset((instant - datetime.now(UTC)).total_seconds())
        return self.offset

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset)

    def real(self, instant: datetime) -> float:
        """The real epoch at which this clock reads `instant`."""
        return instant.timestamp() - self.offset
