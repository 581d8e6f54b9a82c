"""Waiting for a condition with a deadline, never a bare sleep."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, what: str | Callable[[], str],
               interval: float = 0.01) -> T:
    """`predicate()`'s first truthy value, polled every `interval` s; an AssertionError
    naming `what` (or what it returns, asked then) when `timeout` s pass without one."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"{said}: not within {timeout} s")
        time.sleep(interval)


def wait_on(changed: threading.Condition, find: Callable[[], T | None], timeout: float,
            failure: Callable[[], str], ended: Callable[[], bool] = lambda: False) -> T:
    """`find()`'s first value that is not None, looked for again whenever `changed` is
    notified (no polling); an AssertionError saying `failure()` when `timeout` s pass,
    or as soon as `ended()` says nothing more can come."""
    deadline = time.monotonic() + timeout
    with changed:
        while True:
            found = find()
            if found is not None:
                return found
            left = deadline - time.monotonic()
            if left <= 0 or ended():
                raise AssertionError(failure())
            changed.wait(min(left, 0.2))
