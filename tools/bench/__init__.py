"""`make bench`: each figure beside a baseline or limit measured in the same run.

    python -m tools.bench [--quick] [--only NAME ...]

Prints one table row per figure: name, figure, baseline/limit, ratio. These
report; they do not pass or fail (tests/test_benchmarks.py only checks that
they run). --quick shrinks every sample so the whole run takes seconds.
"""

from __future__ import annotations

import argparse
import compileall
import os
import platform
from collections.abc import Callable
from datetime import UTC, datetime

from tests.support import REPO
from tools.bench.posting import (
    bench_crash_trials_refused,
    bench_idle_with_alerts,
    bench_network_trials,
    bench_networks,
    bench_price_alerts,
)
from tools.bench.process import Row, bench_http, bench_idle_cpu, bench_startup
from tools.bench.storage import (
    bench_crash_trials,
    bench_database,
    bench_failover_trials,
    bench_reminders,
    bench_sheets,
    bench_slot_latency,
)

BENCHMARKS: dict[str, Callable[[bool], list[Row]]] = {
    "startup": bench_startup,
    "idle_cpu": bench_idle_cpu,
    "database": bench_database,
    "slot_latency": bench_slot_latency,
    "reminders": bench_reminders,
    "crash_trials": bench_crash_trials,
    "failover_trials": bench_failover_trials,
    "sheets": bench_sheets,
    "http": bench_http,
    "crash_trials_refused": bench_crash_trials_refused,
    "network_trials": bench_network_trials,
    "networks": bench_networks,
    "price_alerts": bench_price_alerts,
    "idle_with_alerts": bench_idle_with_alerts,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench")
    p.add_argument("--quick", action="store_true", help="tiny samples (for the smoke test)")
    p.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS), default=None)
    args = p.parse_args(argv)
    names = args.only or list(BENCHMARKS)
    # The installed daemon runs from byte-code the .deb's postinst compiles; a work
    # tree under PYTHONDONTWRITEBYTECODE would compile every module of ours from
    # source at each start (+CPU, and the compiler's peak stays in RSS).
    compileall.compile_dir(REPO / "buzzbotd", quiet=1)
    print(f"# buzzbotd benchmarks {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on "
          f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average {_load()}")
    print("| figure | measured | baseline / limit (same run) | ratio |")
    print("| --- | --- | --- | --- |", flush=True)
    for name in names:
        for row in BENCHMARKS[name](args.quick):
            print("| " + " | ".join(row) + " |", flush=True)
        # The machine may be shared: each figure's neighbours are part of the figure.
        print(f"<!-- after {name}: load average {_load()} -->", flush=True)
    return 0


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())

