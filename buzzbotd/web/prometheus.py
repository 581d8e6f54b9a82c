"""buzzbotd's series in the Prometheus exposition format, by prometheus_client.

Imported at the first GET /metrics, not before: a daemon whose operator
looks only at /health or the page never loads prometheus_client (+1 MiB).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from buzzbotd.ops import status
from buzzbotd.ops.metrics import COUNTERS, HISTOGRAMS, Metrics

PREFIX = "buzzbotd_"


class Exposition:
    """One registry per server: buzzbotd's own series and the process's."""

    def __init__(self, metrics: Metrics) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = _Collector(metrics)
        self.registry.register(self.collector)
        ProcessCollector(namespace="buzzbotd", registry=self.registry)

    def render(self, gauges: dict[str, Any], parts: dict[str, str]) -> bytes:
        """The text of one scrape, with the database's values read for it."""
        self.collector.scrape = (gauges, parts)
        try:
            return generate_latest(self.registry)
        finally:
            self.collector.scrape = None


class _Collector:
    """buzzbotd's own series, from ops/metrics.py and the scrape's database counts."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.scrape: tuple[dict[str, Any], dict[str, str]] | None = None  # (gauges, parts)

    def collect(self) -> Iterator[Metric]:
        assert self.scrape is not None
        g, parts = self.scrape
        counters, histograms = self.metrics.snapshot()
        families: dict[str, CounterMetricFamily] = {}
        for (name, labels), value in sorted(counters.items()):
            help_text, label_names = COUNTERS.get(name, (name, ()))
            family = families.get(name)
            if family is None:
                # prometheus_client appends _total itself.
                family = families[name] = CounterMetricFamily(
                    PREFIX + name.removesuffix("_total"), help_text, labels=label_names)
            family.add_metric(list(labels), value)
        yield from families.values()
        for name, h in histograms.items():
            cumulative, buckets = 0, []
            for bound, n in zip((*h.bounds, float("inf")), h.counts, strict=True):
                cumulative += n
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            family = HistogramMetricFamily(PREFIX + name, HISTOGRAMS[name][0])
            family.add_metric([], buckets, h.total)
            yield family
        yield GaugeMetricFamily(PREFIX + "users", "Telegram users known to the bot",
                                value=g["users"])
        reminders = GaugeMetricFamily(PREFIX + "reminders", "Stored reminders, by state",
                                      labels=["state"])
        reminders.add_metric(["enabled"], g["reminders_enabled"])
        reminders.add_metric(["disabled"], g["reminders_disabled"])
        yield reminders
        if g["last_post"] is not None:
            yield GaugeMetricFamily(PREFIX + "last_post_timestamp_seconds",
                                    "When the last tweet was confirmed posted (Unix time)",
                                    value=g["last_post"])
        if g["next_slot"] is not None:
            yield GaugeMetricFamily(PREFIX + "next_slot_timestamp_seconds",
                                    "The next scheduled slot (Unix time)", value=g["next_slot"])
        paused = GaugeMetricFamily(PREFIX + "x_paused", "1 while posting is paused (/pause)",
                                   value=1 if g["paused"] else 0)
        yield paused
        yield GaugeMetricFamily(PREFIX + "x_spend_usd", "X's estimated charges this month "
                                "(UTC), at the prices in [x]", value=g["x_spend_usd"])
        up = GaugeMetricFamily(PREFIX + "up", "1 when the part is healthy, 0 otherwise",
                               labels=["part"])
        for part, verdict in sorted(parts.items()):
            up.add_metric([part], 1 if verdict == "ok" else 0)
        yield up
        info = GaugeMetricFamily(PREFIX + "build_info", "The running version",
                                 labels=["version"])
        info.add_metric([status.__version__], 1)
        yield info
