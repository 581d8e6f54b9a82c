"""The daemon process's figures: start-up time and RSS at READY, idle CPU, and the
HTTP server's answer times (`make bench`, tools/bench/)."""

from __future__ import annotations

import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.support import Daemon, NotifySocket, rss_kib, write_config

# tornado and psycopg kept out as the daemon keeps them out (python-telegram-bot
# would import tornado for its webhook server, peewee psycopg and libpq whenever
# installed; the daemon loads psycopg only for a PostgreSQL database.url), so the
# baseline is the libraries the daemon loads, as it was before either was pinned.
BARE_IMPORT = ("import sys; sys.modules['tornado'] = None; sys.modules['psycopg'] = None; "
               "import telegram.ext, tweepy, peewee, schedule, sdnotify")
Row = tuple[str, str, str, str]


def _cpu_seconds(pid: int) -> float:
    """CPU time of all the process's threads, in ns resolution (schedstat), where
    /proc/<pid>/stat counts 10 ms ticks: too coarse for a minute of idleness."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            pass                         # the thread ended between listing and reading
    return total / 1e9


def bare_import() -> tuple[float, int]:
    """Wall seconds and max RSS (KiB) of a bare import of the dependencies."""
    # VmHWM, not ru_maxrss: Linux carries the parent's peak RSS over exec into
    # ru_maxrss, so a big benchmark process would inflate the baseline.
    code = (f"import time; t = time.monotonic(); {BARE_IMPORT}; "
            "print(time.monotonic() - t, next(int(l.split()[1]) for l in "
            "open('/proc/self/status') if l.startswith('VmHWM:')))")
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "MALLOC_ARENA_MAX": "2"}  # as the daemon's
                         ).stdout.split()
    return time.monotonic() - started, int(out[1])


class Run:
    """One daemon process in a temporary directory, started and READY."""

    def __init__(self, workdir: Path, **sections: dict) -> None:
        self.notify = NotifySocket(workdir / "notify.sock")
        self.config = write_config(workdir, **sections)
        self.daemon = Daemon(self.config, self.notify)
        self.ready_s = self.notify.wait_message("READY=1", timeout=60) - self.daemon.started_at

    def stop(self) -> None:
        self.daemon.terminate()
        self.notify.close()


def _all_on(workdir: Path, fakes: dict) -> dict[str, dict]:
    """Config sections with X and Telegram on, pointed at the fake servers."""
    from tests.fakes.telegram import TOKEN
    from tests.fakes.x import CREDENTIALS
    return {"price": {"url": fakes["price"].endpoint},
            "x": {"enabled": True, "api_base": fakes["x"].url, "times": ["03:00"],
                  **CREDENTIALS},
            "telegram": {"enabled": True, "api_base": fakes["telegram"].url, "token": TOKEN}}


class Fakes:
    """The three fake APIs, started for a benchmark."""

    def __enter__(self) -> dict:
        from tests.fakes.price import FakePrice
        from tests.fakes.telegram import FakeTelegram
        from tests.fakes.x import FakeX
        self.fakes = {"x": FakeX().start(), "telegram": FakeTelegram().start(),
                      "price": FakePrice().start()}
        return self.fakes

    def __exit__(self, *exc: object) -> None:
        for fake in self.fakes.values():
            fake.stop()


def bench_startup(quick: bool) -> list[Row]:
    n = 2 if quick else 7
    bare = []
    ready: dict[str, list[float]] = {"off": [], "on": []}
    rss: dict[str, list[int]] = {"off": [], "on": []}
    with Fakes() as fakes:
        for _ in range(n):         # interleaved, so a noisy moment hits all three alike
            bare.append(bare_import())
            for mode in ("off", "on"):
                with tempfile.TemporaryDirectory() as d:
                    run = Run(Path(d), **(_all_on(Path(d), fakes) if mode == "on" else {}))
                    ready[mode].append(run.ready_s)
                    rss[mode].append(rss_kib(run.daemon.pid))
                    run.stop()
    bare_s = statistics.median(b[0] for b in bare)
    bare_rss = statistics.median(b[1] for b in bare)
    rows = []
    for mode, label in (("on", "X and Telegram on"), ("off", "X and Telegram off")):
        ready_s = statistics.median(ready[mode])
        rows.append((f"start → READY=1, {label} (median of {n})", f"{ready_s * 1000:.0f} ms",
                     f"bare import {bare_s * 1000:.0f} ms", f"{ready_s / bare_s:.2f}×"))
    for mode, label in (("on", "X and Telegram on"), ("off", "X and Telegram off")):
        median_kib = statistics.median(rss[mode])
        rows.append((f"RSS after READY, {label}", f"{median_kib / 1024:.1f} MiB",
                     f"bare import {bare_rss / 1024:.1f} MiB", f"{median_kib / bare_rss:.2f}×"))
    return rows


def bench_idle_cpu(quick: bool) -> list[Row]:
    seconds = 5 if quick else 60
    with Fakes() as fakes, tempfile.TemporaryDirectory() as d:
        run = Run(Path(d), **_all_on(Path(d), fakes))     # the bot long-polls the fake
        before = _cpu_seconds(run.daemon.pid)
        time.sleep(seconds)              # the measurement is of idleness itself
        used = _cpu_seconds(run.daemon.pid) - before
        polls = sum(1 for r in fakes["telegram"].requests if r.path.endswith("/getUpdates"))
        run.stop()
    share = used / seconds * 100
    return [(f"CPU while idle over {seconds} s (X and Telegram on, {polls} getUpdates)",
             f"{share:.3f}% of a core ({used * 1000:.0f} ms)", "goal ≤ 0.02%",
             f"{share / 0.02:.1f}× goal")]


def _get_ms(conn: http.client.HTTPConnection, path: str, n: int) -> tuple[float, int]:
    """Median milliseconds of n GETs of `path` on one kept-alive connection."""
    timings, size = [], 0
    for _ in range(n):
        started = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status == 200, (path, response.status, body[:200])
        size = len(body)
    return statistics.median(timings), size


def bench_http(quick: bool) -> list[Row]:
    """[http] on beside [http] off, X and Telegram on in both, measured side by side."""
    from tests.support import free_port
    from tests.support.telegram_world import seed_reminders
    from tests.support.x_world import seed_posts
    n = 2 if quick else 5
    seconds = 5 if quick else 60
    rss: dict[str, list[int]] = {"off": [], "on": [], "used": []}
    with Fakes() as fakes:
        for _ in range(n):
            for mode in ("off", "on"):
                with tempfile.TemporaryDirectory() as d:
                    port = free_port()
                    listen = f"127.0.0.1:{port}" if mode == "on" else ""
                    run = Run(Path(d), **_all_on(Path(d), fakes), http={"listen": listen})
                    fakes["telegram"].wait_for_polls(1)
                    rss[mode].append(rss_kib(run.daemon.pid))
                    if mode == "on":
                        # tornado and prometheus_client load at first use: RSS once
                        # every endpoint has answered, as under a scraper.
                        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                        for path in ("/health", "/", "/metrics", "/api/status"):
                            _get_ms(conn, path, 1)
                        conn.close()
                        rss["used"].append(rss_kib(run.daemon.pid))
                    run.stop()
        # Idle CPU: both daemons at once over the same window, so noise hits both; each
        # with its own fakes: two bots polling one token would end each other's
        # getUpdates with 409 Conflict all minute, and that is what would be measured.
        with Fakes() as other, tempfile.TemporaryDirectory() as a, \
                tempfile.TemporaryDirectory() as b:
            runs = {"off": Run(Path(a), **_all_on(Path(a), fakes), http={"listen": ""}),
                    "on": Run(Path(b), **_all_on(Path(b), other),
                              http={"listen": f"127.0.0.1:{free_port()}"})}
            for f in (fakes, other):
                f["telegram"].wait_for_polls(1)
            # Past both starts' tails (the first poll's answer, the start-up jobs): the
            # "on" daemon starts second, and its tail would fall inside the window.
            time.sleep(2 if quick else 10)
            conflicts_before = fakes["telegram"].conflicts + other["telegram"].conflicts
            before = {m: _cpu_seconds(r.daemon.pid) for m, r in runs.items()}
            time.sleep(seconds)          # the measurement is of idleness itself
            cpu = {m: (_cpu_seconds(r.daemon.pid) - before[m]) / seconds * 100
                   for m, r in runs.items()}
            for r in runs.values():
                r.stop()
            conflicts = fakes["telegram"].conflicts + other["telegram"].conflicts - conflicts_before
    off, on = statistics.median(rss["off"]), statistics.median(rss["on"])
    used = statistics.median(rss["used"])
    rows = [
        (f"RSS after READY, [http] on (X and Telegram on, median of {n})",
         f"{on / 1024:.1f} MiB (+{(on - off) / 1024:.2f} MiB)",
         f"[http] off {off / 1024:.1f} MiB; goal ≤ +1 MiB", f"{(on - off) / 1024:.1f}× goal"),
        (f"RSS after READY and one GET of each endpoint, [http] on (median of {n})",
         f"{used / 1024:.1f} MiB (+{(used - off) / 1024:.2f} MiB)",
         f"[http] off {off / 1024:.1f} MiB; goal ≤ +1 MiB", f"{(used - off) / 1024:.1f}× goal"),
        (f"CPU while idle over {seconds} s, [http] on (X and Telegram on, {conflicts} 409s)",
         f"{cpu['on']:.4f}% of a core ({cpu['on'] - cpu['off']:+.4f}%)",
         f"[http] off {cpu['off']:.4f}%; goal ≤ +0.002%",
         f"{(cpu['on'] - cpu['off']) / 0.002:.1f}× goal"),
    ]
    # Response times with a year of posts and 100,000 reminders.
    n_reminders = 10_000 if quick else 100_000
    requests = 11 if quick else 101
    with Fakes() as fakes, tempfile.TemporaryDirectory() as d:
        path = Path(d) / "state" / "buzzbotd.db"
        seed_reminders(path, n_reminders, datetime.now(UTC) + timedelta(hours=2),
                       spread_s=20 * 3600)
        posts = seed_posts(path, datetime.now(UTC), days=365)
        port = free_port()
        run = Run(Path(d), **_all_on(Path(d), fakes), http={"listen": f"127.0.0.1:{port}"})
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            _get_ms(conn, "/", 3)                          # warm the page cache
            metrics_ms, metrics_size = _get_ms(conn, "/metrics", requests)
            page_ms, page_size = _get_ms(conn, "/", requests)
            health_ms, _ = _get_ms(conn, "/health", requests)
        finally:
            conn.close()
            run.stop()
    what = f"{n_reminders:,} reminders, 365 days of posts ({posts} in the chart)"
    rows += [
        (f"GET /metrics, {what}", f"median {metrics_ms:.2f} ms ({metrics_size} bytes)",
         "goal ≤ 5 ms", f"{metrics_ms / 5:.2f}× goal"),
        (f"GET /, {what}", f"median {page_ms:.2f} ms ({page_size} bytes)", "goal ≤ 20 ms",
         f"{page_ms / 20:.2f}× goal"),
        ("GET /health", f"median {health_ms:.2f} ms", "—", "—"),
    ]
    return rows
