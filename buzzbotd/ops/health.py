"""The one health registry: heartbeats, degraded parts, conditions for the alerts.

Everything that says whether the daemon works is recorded here, from any
thread, and everything that tells of it reads it here: the watchdog (stale
beats, and its own verdict in `hung`), `/health` and the status page
(`parts`), STATUS= and `buzzbotd status` (`degraded`), the admins' alerts
(`conditions`, through `listen`).

  - a heartbeat: a part running in its own thread promises to beat at least
    every max_age_s (the scheduler); a silent one is hung;
  - degraded: a part is up but not doing its work (Telegram unreachable, the
    database locked by another process, the clock not set); no reason for a
    restart, it shows in STATUS= and `status`;
  - a condition: what the admins must hear of (X failing, the price API down,
    a 409, the database locked); listeners hear each start, change and end, in
    the thread that reported it. One only ever seen, never seen to end (a 409),
    is given a ttl.

A database error is classified once, by its code (db.owner's `classify`); the
owner reports it here as the part "database".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from buzzbotd.clock import Clock, utc_now

WATCHDOG_PARTS = ("loop", "scheduler", "database")   # the parts whose failure systemd acts on
Listener = Callable[[str, "Condition | None", "Condition | None"], None]


@dataclass(frozen=True)
class Condition:
    reason: str
    since: float                   # on the registry's monotonic clock
    expires: float | None = None   # for a problem only seen, never seen to end (a 409)


class Health:
    """Thread-safe: any thread may beat, degrade, recover, report or clear."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, wall: Clock = utc_now
                 ) -> None:
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._beats: dict[str, tuple[float, float]] = {}  # name -> (last beat, max age)
        self._degraded: dict[str, tuple[str, datetime]] = {}
        self.conditions: dict[str, Condition] = {}
        self._listeners: list[Listener] = []
        # The watchdog's last verdict: what keeps it from feeding systemd.
        self.hung: list[str] = []
        # Called (from the thread that changed it) when the degraded parts change.
        self.on_change: Callable[[], None] | None = None

    def use_wall(self, wall: Clock) -> None:
        """The daemon's clock (a test's clock file) for the `since` of degraded parts."""
        self._wall = wall

    def clock(self) -> float:
        """The monotonic clock the conditions are timed on."""
        return self._clock()

    # -- degraded parts -----------------------------------------------------

    def degrade(self, part: str, reason: str) -> None:
        """`part` is up but not doing its work, for `reason`. The first `since` is
        kept while it stays degraded, whatever the reason becomes."""
        with self._lock:
            old = self._degraded.get(part)
            self._degraded[part] = (reason, old[1] if old else self._wall())
        if old is None or old[0] != reason:
            self._changed()

    def recover(self, part: str) -> None:
        if part not in self._degraded:     # a dict lookup: no lock on the hot path
            return
        with self._lock:
            old = self._degraded.pop(part, None)
        if old is not None:
            self._changed()

    def now(self) -> datetime:
        """The wall clock the `since` times are read on."""
        return self._wall()

    def degraded(self) -> dict[str, tuple[str, datetime]]:
        """part -> (reason, since as an aware UTC datetime)."""
        with self._lock:
            return dict(self._degraded)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    # -- heartbeats ---------------------------------------------------------

    def register(self, name: str, max_age_s: float) -> None:
        with self._lock:
            self._beats[name] = (self._clock(), max_age_s)

    def beat(self, name: str) -> None:
        with self._lock:
            _, max_age = self._beats[name]
            self._beats[name] = (self._clock(), max_age)

    def stale(self) -> list[str]:
        """Parts whose last beat is older than they promised."""
        now = self._clock()
        with self._lock:
            return [f"{name} silent for {now - last:.0f}s"
                    for name, (last, max_age) in self._beats.items() if now - last > max_age]

    # -- conditions (the admins' alerts) ---------------------------------------

    def problem(self, part: str, reason: str, ttl_s: float | None = None) -> None:
        """`part` is failing (again); listeners hear of the start of it, and of a new
        reason. With `ttl_s`, it is over once not reported again for that long."""
        with self._lock:
            before = self.conditions.get(part)
            now = self._clock()
            expires = None if ttl_s is None else now + ttl_s
            after = Condition(reason, before.since if before else now, expires)
            self.conditions[part] = after
            if before is not None and before.reason == reason:
                return
            listeners = list(self._listeners)
        for listener in listeners:
            listener(part, before, after)

    def clear(self, part: str) -> None:
        """`part` works again. Cheap when it was not failing (the usual case)."""
        if part not in self.conditions:        # a dict lookup: no lock on the hot path
            return
        with self._lock:
            before = self.conditions.pop(part, None)
            listeners = list(self._listeners)
        if before is not None:
            for listener in listeners:
                listener(part, before, None)

    def clear_expired(self) -> None:
        now = self._clock()
        for part, condition in list(self.conditions.items()):
            if condition.expires is not None and condition.expires <= now:
                self.clear(part)

    def listen(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)

    # -- what /health answers ----------------------------------------------------

    def parts(self, watched: dict[str, bool], owner_silent: str | None = None
              ) -> dict[str, str]:
        """Each part: "ok", or what is wrong. The watchdog's judgement (the loop
        turns, the scheduler beats, the database owner answers; `owner_silent`: the
        caller's own ping of it went unanswered), plus each part of `watched` that
        is on as "degraded: …" when it is degraded or failing."""
        parts = {"loop": "ok", "scheduler": "ok", "database": "ok"}
        for problem in self.stale():
            parts[problem.split()[0]] = problem
        for problem in self.hung:
            if problem.startswith("database"):
                parts["database"] = problem
        if owner_silent is not None:
            parts["database"] = owner_silent
        for part, on in watched.items():
            if on:
                parts[part] = "ok"
        self.clear_expired()
        reasons = {part: reason for part, (reason, _) in self.degraded().items()}
        reasons.update({part: c.reason for part, c in list(self.conditions.items())})
        for part, reason in reasons.items():
            if parts.get(part, "ok") == "ok" or part not in WATCHDOG_PARTS:
                parts[part] = f"degraded: {reason}"
        return parts


# The daemon's one registry (a process runs one daemon); tests make their own Health.
HEALTH = Health()
