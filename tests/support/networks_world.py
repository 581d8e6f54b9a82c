"""What the network clients' tests share: a clock that the client and the fake
server both read (a test moves it, or moves the fake's view alone), and a fake
that runs for the length of a test."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime
from typing import TypeVar

from tests.fakes import FakeAPI

Fake = TypeVar("Fake", bound=FakeAPI)


class ManualClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def epoch(self) -> float:
        """The same instant as a fake server reads its clock."""
        return self.now.timestamp()


@contextlib.contextmanager
def running(fake: Fake, clock: ManualClock) -> Iterator[Fake]:
    """`fake` serving on `clock` (the fakes' `clock` reads epoch seconds)."""
    fake.clock = clock.epoch                     # type: ignore[attr-defined]
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
