"""KeyedThrottle: "at most once per period for each key" (a lasting condition's
log line, an alert of one kind), on an injected monotonic clock."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable


class KeyedThrottle:
    """Remembers when each key last went through. Thread-safe."""

    def __init__(self, period_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.period_s = period_s
        self.clock = clock
        self._last: dict[Hashable, float] = {}
        self._lock = threading.Lock()

    def allow(self, key: Hashable) -> bool:
        """True (and counts as the key's turn) if `key` did not go through within
        the period; False otherwise."""
        now = self.clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.period_s:
                return False
            self._last[key] = now
            return True

    def note(self, key: Hashable) -> None:
        """`key` went through now, whatever the period says (a message that is
        always sent still opens a new period)."""
        with self._lock:
            self._last[key] = self.clock()

    def since(self, key: Hashable) -> float | None:
        """Seconds since `key` last went through, or None if it never did."""
        with self._lock:
            last = self._last.get(key)
        return None if last is None else self.clock() - last

    def forget(self, key: Hashable) -> None:
        """The next allow(key) goes through (the condition it throttled is over)."""
        with self._lock:
            self._last.pop(key, None)
