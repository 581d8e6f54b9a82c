"""What the daemon counts, for GET /metrics, /health and the admins' alerts.

The parts call one-line hooks (`METRICS.inc(...)`, `METRICS.observe(...)`,
`METRICS.problem(...)`/`METRICS.clear(...)`) from any thread. They are plain
dictionaries under one lock: no import of prometheus_client here, so a daemon
with `[http]` off pays nothing for them; buzzbotd.exposition turns them into the
exposition format when scraped.

`problem(part, reason)` / `clear(part)` track conditions an operator must hear
about (X failing, the price API down, a 409, the database locked); listeners
(buzzbotd.alerts) are called on every change, in the thread that reported it.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

# Upper bounds, in seconds, of the histograms' buckets (+Inf is implied).
FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SLOW_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

# name → (help, label names); every series is pre-declared so a scrape shows it at 0.
COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "tweets_total": ("Slots settled, by outcome (posted, failed, skipped)", ("outcome",)),
    "reminders_total": ("Reminder deliveries, by outcome (sent, failed, blocked, rejected, "
                        "skipped)", ("outcome",)),
    "telegram_429_total": ("429 Too Many Requests answers from Telegram", ()),
    "telegram_409_total": ("409 Conflict answers to getUpdates (another poller)", ()),
    "price_fetch_errors_total": ("Price fetch attempts that failed", ()),
    "alerts_sent_total": ("Alert messages sent to admins, by kind", ("kind",)),
    "x_requests_total": ("Requests to the X API, by kind (post, read, user)", ("kind",)),
}
HISTOGRAMS: dict[str, tuple[str, tuple[float, ...]]] = {
    "price_fetch_seconds": ("Duration of one price fetch attempt", FAST_BUCKETS + (5.0, 10.0)),
    "db_call_seconds": ("Duration of one call in the database owner", FAST_BUCKETS),
    "slot_post_latency_seconds": ("From a slot's due instant to its tweet being confirmed",
                                  SLOW_BUCKETS),
}
PRESET_LABELS = {
    "tweets_total": ("posted", "failed", "skipped"),
    "reminders_total": ("sent", "failed", "blocked", "rejected", "skipped"),
    "alerts_sent_total": ("x", "price", "telegram", "database", "unclean"),
    "x_requests_total": ("post", "read"),
}

PAUSED_REASON = "posting was paused"     # how posting.py words a skip under /pause
Listener = Callable[[str, "Condition | None", "Condition | None"], None]


@dataclass
class Histogram:
    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)   # per bucket, not cumulative; last = +Inf
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1


@dataclass(frozen=True)
class Condition:
    reason: str
    since: float                   # time.time() when it began
    expires: float | None = None   # for a problem only seen, never seen to end (a 409)


class Metrics:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self.counters: dict[tuple[str, tuple[str, ...]], float] = {}
        self.histograms = {name: Histogram(bounds) for name, (_, bounds) in HISTOGRAMS.items()}
        self.conditions: dict[str, Condition] = {}
        self._listeners: list[Listener] = []
        for name, (_, labels) in COUNTERS.items():
            for value in PRESET_LABELS.get(name, ()):
                self.counters[(name, (value,))] = 0.0
            if not labels:
                self.counters[(name, ())] = 0.0

    # -- hooks (any thread) ---------------------------------------------------

    def inc(self, name: str, amount: float = 1, label: str | None = None) -> None:
        key = (name, () if label is None else (label,))
        with self._lock:
            self.counters[key] = self.counters.get(key, 0.0) + amount

    def observe(self, name: str, seconds: float) -> None:
        with self._lock:
            self.histograms[name].observe(seconds)

    def problem(self, part: str, reason: str, ttl_s: float | None = None) -> None:
        """`part` is failing (again); listeners hear of the start of it, and of a new
        reason. With `ttl_s`, it is over once not reported again for that long."""
        with self._lock:
            before = self.conditions.get(part)
            expires = None if ttl_s is None else self.clock() + ttl_s
            now = Condition(reason, before.since if before else self.clock(), expires)
            self.conditions[part] = now
            if before is not None and before.reason == reason:
                return
            listeners = list(self._listeners)
        for listener in listeners:
            listener(part, before, now)

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
        now = self.clock()
        for part, condition in list(self.conditions.items()):
            if condition.expires is not None and condition.expires <= now:
                self.clear(part)

    # -- what the parts report, one line at each place ----------------------------

    def slot_settled(self, key: str, kind: str, outcome: str, reason: str,
                     due: datetime, now: datetime) -> None:
        """From the ledger, after the commit: a slot posted, failed or skipped."""
        self.inc("tweets_total", label=outcome)
        if outcome == "posted":
            if kind == "scheduled":
                self.observe("slot_post_latency_seconds", max((now - due).total_seconds(), 0))
            self.clear("x")
        elif not reason.startswith(PAUSED_REASON):      # a /pause is the admins' own doing
            self.problem("x", f"slot {key} {outcome}: {reason}")

    def db_call(self, seconds: float, error: BaseException | None) -> None:
        """From the database owner, after each call."""
        self.observe("db_call_seconds", seconds)
        text = str(error).lower() if error is not None else ""
        if "locked" in text or "busy" in text:
            self.problem("database", f"database locked by another process ({error})")
        elif "full" in text or "disk i/o" in text:
            self.problem("database", f"cannot write: {error}")
        elif error is None:
            self.clear("database")

    def reminders(self, tally: dict[str, int]) -> None:
        """From a reminder round: its tally."""
        for outcome, n in tally.items():
            if n:
                self.inc("reminders_total", n, label=outcome)

    # -- readers --------------------------------------------------------------

    def listen(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def snapshot(self) -> tuple[dict[tuple[str, tuple[str, ...]], float],
                                dict[str, Histogram], dict[str, Condition]]:
        with self._lock:
            histograms = {}
            for name, h in self.histograms.items():
                copy = Histogram(h.bounds)
                copy.counts, copy.total, copy.count = list(h.counts), h.total, h.count
                histograms[name] = copy
            return dict(self.counters), histograms, dict(self.conditions)


# The daemon's one set (a process runs one daemon); tests make their own Metrics.
METRICS = Metrics()
