"""What the daemon counts, for GET /metrics.

The parts call one-line hooks (`METRICS.inc(...)`, `METRICS.observe(...)`) from
any thread. They are plain dictionaries under one lock: no import of
prometheus_client here, so a daemon with `[http]` off pays nothing for them;
buzzbotd.web.prometheus turns them into the exposition format when scraped.
What is failing is not counted here but recorded in buzzbotd.ops.health.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field
from datetime import datetime

from buzzbotd.ops.health import HEALTH, Health

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
    "price_quotes_total": ("Good quotes, by the source that answered (coingecko is the "
                           "primary; coinbase and kraken the fallbacks)", ("source",)),
    "alerts_sent_total": ("Alert messages sent to admins, by kind", ("kind",)),
    "x_requests_total": ("Requests to the X API, by kind (post, read, user)", ("kind",)),
    "network_posts_total": ("Slots settled on the networks other than X (bluesky, mastodon, "
                            "channel), by network and outcome", ("network", "outcome")),
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
    "alerts_sent_total": ("x", "price", "telegram", "database", "unclean", "x_plan",
                          "x_budget"),
    "price_quotes_total": ("coingecko", "coinbase", "kraken"),
    "x_requests_total": ("post", "read"),
}



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


class Metrics:
    def __init__(self, health: Health = HEALTH) -> None:
        self.health = health        # where a settled slot says whether X works
        self._lock = threading.Lock()
        self.counters: dict[tuple[str, tuple[str, ...]], float] = {}
        self.histograms = {name: Histogram(bounds) for name, (_, bounds) in HISTOGRAMS.items()}
        for name, (_, labels) in COUNTERS.items():
            for value in PRESET_LABELS.get(name, ()):
                self.counters[(name, (value,))] = 0.0
            if not labels:
                self.counters[(name, ())] = 0.0

    # -- hooks (any thread) ---------------------------------------------------

    def inc(self, name: str, amount: float = 1, label: str | tuple[str, ...] | None = None
            ) -> None:
        labels = () if label is None else (label,) if isinstance(label, str) else label
        key = (name, labels)
        with self._lock:
            self.counters[key] = self.counters.get(key, 0.0) + amount

    def observe(self, name: str, seconds: float) -> None:
        with self._lock:
            self.histograms[name].observe(seconds)

    # -- what the parts report, one line at each place ----------------------------

    def slot_settled(self, key: str, kind: str, outcome: str, reason: str,
                     due: datetime, now: datetime, network: str = "x",
                     alert: bool = True) -> None:
        """From the ledger, after the commit: a slot posted, failed, skipped or unknown
        on `network` (each network is its own health part, so its own alert);
        `alert=False`: a skip that is the admins' own doing (a /pause)."""
        if network != "x":
            self.inc("network_posts_total", label=(network, outcome))
            if outcome == "posted":
                self.health.clear(network)
            elif alert:
                self.health.problem(network, f"slot {key} on {network} {outcome}: {reason}")
            return
        self.inc("tweets_total", label=outcome)
        if outcome == "posted":
            if kind == "scheduled":
                self.observe("slot_post_latency_seconds", max((now - due).total_seconds(), 0))
            self.health.clear("x")
        elif alert:
            self.health.problem("x", f"slot {key} {outcome}: {reason}")

    def reminders(self, tally: dict[str, int]) -> None:
        """From a reminder round: its tally."""
        for outcome, n in tally.items():
            if n:
                self.inc("reminders_total", n, label=outcome)

    # -- readers --------------------------------------------------------------

    def snapshot(self) -> tuple[dict[tuple[str, tuple[str, ...]], float],
                                dict[str, Histogram]]:
        with self._lock:
            histograms = {}
            for name, h in self.histograms.items():
                copy = Histogram(h.bounds)
                copy.counts, copy.total, copy.count = list(h.counts), h.total, h.count
                histograms[name] = copy
            return dict(self.counters), histograms


# The daemon's one set (a process runs one daemon); tests make their own Metrics.
METRICS = Metrics()
