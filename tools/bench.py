"""`make bench`: each figure beside a baseline or limit measured in the same run.

    python -m tools.bench [--quick] [--only NAME ...]

Prints one table row per figure: name, figure, baseline/limit, ratio. These
report; they do not pass or fail (tests/test_benchmarks.py only checks that
they run). --quick shrinks every sample so the whole run takes seconds.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import http.client
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.support import REPO, Daemon, NotifySocket, rss_kib, write_config

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


def _write_post(n: int) -> None:
    from buzzbotd.db import Post, PostEvent
    now = datetime.now(UTC)
    post = Post.create(slot_key=f"bench-{n}-{time.monotonic_ns()}", kind="manual", due_at=now,
                       state="posted", text="bench", created_at=now, updated_at=now)
    PostEvent.create(post=post, at=now, event="posted")


def bench_database(quick: bool) -> list[Row]:
    import peewee

    from buzzbotd.db import DatabaseOwner, database, migrations
    from buzzbotd.db.owner import PRAGMAS
    seconds = 1.0 if quick else 5.0
    with tempfile.TemporaryDirectory() as d:
        # Baseline: one bare peewee connection, one thread, same pragmas and transaction.
        bare_db = peewee.SqliteDatabase(f"{d}/bare.db", pragmas=PRAGMAS, lock_type="IMMEDIATE")
        migrations.migrate(bare_db)
        database.initialize(bare_db)
        count, deadline = 0, time.monotonic() + seconds
        while time.monotonic() < deadline:
            with bare_db.atomic():
                _write_post(count)
            count += 1
        bare_rate = count / seconds
        bare_db.close()

        config = write_config(Path(d))
        Path(d, "state").mkdir()
        owner = DatabaseOwner(Path(d, "state", "buzzbotd.db"))
        owner.start()
        stop = threading.Event()
        written = [0] * 8
        errors: list[str] = []
        reads = [0]

        def writer(i: int) -> None:
            while not stop.is_set():
                try:
                    owner.call(_write_post, i)
                    written[i] += 1
                except Exception as e:  # noqa: BLE001 - counted as a figure
                    errors.append(repr(e))

        def reader() -> None:
            env = dict(os.environ, PYTHONPATH=str(REPO))
            while not stop.is_set():
                r = subprocess.run([sys.executable, "-m", "buzzbotd", "status", "--json",
                                    "--config", str(config)], capture_output=True, text=True,
                                   env=env)
                if r.returncode != 0 or "locked" in r.stderr:
                    errors.append(r.stderr.strip())
                reads[0] += 1

        threads = [threading.Thread(target=writer, args=(i,), name=f"w{i}") for i in range(8)]
        threads.append(threading.Thread(target=reader, name="reader"))
        for t in threads:
            t.start()
        time.sleep(seconds)              # the measurement window
        stop.set()
        for t in threads:
            t.join()
        owner.stop()
    rate = sum(written) / seconds
    locked = sum("locked" in e for e in errors)
    return [("DB writes/s via the owner (8 threads, status readers running)",
             f"{rate:.0f}/s; {reads[0]} status reads, {locked} locked, {len(errors)} errors",
             f"one bare peewee connection {bare_rate:.0f}/s", f"{rate / bare_rate:.2f}×")]


def bench_slot_latency(quick: bool) -> list[Row]:
    n = 3 if quick else 20
    with _postgres() as url:
        pg = _slot_lags(n, url)
    lite = _slot_lags(n)
    return [(f"slot time → POST at the X server ({len(lags)} slots, {backend})",
             f"median {statistics.median(lags):.1f} ms, max {max(lags):.1f} ms", "0 ms", "—")
            for backend, lags in (("SQLite", lite), ("PostgreSQL", pg))]


def _slot_lags(n: int, database_url: str | None = None) -> list[float]:
    """ms from each of n slots (a second apart) to its POST reaching the fake X."""
    from tests.fakes.price import FakePrice
    from tests.fakes.x import POST_TWEET, FakeX
    from tests.support.x_world import SlotClock, hhmmss, x_config
    x, price = FakeX().start(), FakePrice().start()
    try:
        with tempfile.TemporaryDirectory() as d:
            # The slots come when the daemon has begun its work (a first start on
            # PostgreSQL, migrations and leadership, can take seconds on a loaded
            # machine): its clock is moved to them then, and each lag is counted
            # from the real instant its clock read the slot.
            clock = SlotClock(Path(d), x)
            due = [clock.due + timedelta(seconds=i) for i in range(n)]
            config = x_config(Path(d), x, price, [hhmmss(when) for when in due],
                              database_url=database_url or "")
            notify = NotifySocket(Path(d) / "notify.sock")
            daemon = Daemon(config, notify, **clock.daemon_args())
            try:
                notify.wait_message("READY=1", timeout=60)
                if not database_url:    # the start's backup (fsyncs) is not the slots' lag
                    daemon.wait_log("database backed up to", timeout=60)
                clock.arrive(daemon, timeout=60)
                slots = [clock.real(when) for when in due]
                if not x.wait_until(lambda: x.post_attempts >= n, timeout=n + 30):
                    raise RuntimeError(f"{x.post_attempts} of {n} slots posted:\n{daemon.log}")
            finally:
                daemon.terminate()
                notify.close()
        posts = sorted(r.at for r in x.requests if x.route(r) == POST_TWEET)
    finally:
        x.stop()
        price.stop()
    return [(at - slot) * 1000 for at, slot in zip(posts, slots, strict=True)]


@contextlib.contextmanager
def _postgres() -> Iterator[str]:
    """An empty database on a PostgreSQL server started for the benchmark
    (tests/support/postgres.py)."""
    from tests.support.postgres import start_server
    server = start_server(durable_commits=True)     # each commit's flush is in the figures
    try:
        yield server.create_database()
    finally:
        server.stop()


def bench_crash_trials(quick: bool) -> list[Row]:
    from tools.crash_trials import run_trials
    n = 3 if quick else 100
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as d:
        r = run_trials(n, Path(d))
    minutes = (time.monotonic() - started) / 60
    return [(f"kill -9 trials ({n} in {minutes:.0f} min; kill points {r['kill_points']}; "
             f"clock {r['clock_jumps']}; {r['tweets_sent']} /tweets sent)",
             f"slots with 0 / 1 / 2+ tweets: {r['slots_with_0']} / {r['slots_with_1']} / "
             f"{r['slots_with_2_or_more']}; /tweet rows {r['manual_rows']}, with 0: "
             f"{r['manual_with_0']}, with 2+: {r['manual_with_2_or_more']}; "
             f"{r['timeline_reads']} timeline reads",
             f"{n} / {n} slots with exactly 1", f"{r['slots_with_1'] / n:.2f}")]


def bench_failover_trials(quick: bool) -> list[Row]:
    from tools.failover_trials import main
    n = 2 if quick else 100
    r = main(n)
    return [(f"failover trials, PostgreSQL, 2 daemons ({n} in {r['seconds'] / 60:.0f} min; "
             f"kill points {r['kill_points']})",
             f"slots with 0 / 1 / 2+ tweets: {r['slots_with_0']} / {r['slots_with_1']} / "
             f"{r['slots_with_2_or_more']}; reminders with 0 / 1 / 2+ messages: "
             f"{r['reminders_with_0']} / {r['reminders_with_1']} / "
             f"{r['reminders_with_2_or_more']}; overlapping getUpdates: "
             f"{r['overlapping_getupdates']}; takeover median {r['takeover_median_s']} s, "
             f"max {r['takeover_max_s']} s; leaderships lost to stalls: "
             f"{len(r['leaderships_lost'])}",
             f"{n} / {n} slots with exactly 1; 0 overlaps; takeover ≤ 15 s",
             f"{r['slots_with_1'] / n:.2f}")]


def bench_reminders(quick: bool) -> list[Row]:
    from tests.support.telegram_world import burst, due_query_ms, rss_kib_with_reminders
    n_burst = 60 if quick else 1000
    n_stored = 10_000 if quick else 100_000
    b = burst(n_burst)
    with _postgres() as url:
        b_pg = burst(n_burst, database_url=url)
    q = due_query_ms(n_stored)
    empty, full = rss_kib_with_reminders(0), rss_kib_with_reminders(n_stored)
    _, bare_rss = bare_import()
    uses_index = all("USING INDEX reminder_due" in step for step in q["plan"])
    return [
        *[(f"reminder burst: {n_burst} due at once, delivered/s ({backend})",
           f"{b['msg_per_s']:.1f}/s, {b['delivered']} delivered, exactly once: "
           f"{b['exactly_once']}, max {b['max_in_any_second']} in any second, "
           f"429s {sum(b['too_many'].values())}",
           "the server's limit 30/s (ours: 29 in any second); goal ≥ 27/s",
           f"{b['msg_per_s'] / 30:.2f}")
          for backend, b in (("SQLite", b), ("PostgreSQL", b_pg))],
        (f"dispatch query with {n_stored:,} reminders ({q['rows']} due)",
         f"{q['ms']:.2f} ms median", "index reminder_due used: " + str(uses_index), "—"),
        (f"RSS after READY with {n_stored:,} reminders (Telegram on)",
         f"{full / 1024:.1f} MiB (none stored: {empty / 1024:.1f} MiB)",
         f"bare import {bare_rss / 1024:.1f} MiB", f"{full / bare_rss:.2f}×"),
    ]


def bench_sheets(quick: bool) -> list[Row]:
    from tests.support.sheets_world import sync_figures
    n = 2_000 if quick else 100_000
    f = sync_figures(n)
    requests, sent, wall = f["first"]
    grown = (f["rss_after"] - f["rss_before"]) / 1024
    first_grown = (f["rss_before"] - f["rss_ready"]) / 1024
    return [
        (f"Sheets sync of {n:,} users + {n:,} reminders (the second sync)",
         f"{f['wall_s']:.1f} s, {f['requests']} requests, {f['bytes'] / 1e6:.1f} MB sent, "
         f"{f['rows']:,} reminder rows in the sheet",
         f"the first sync (adds the sheets): {wall:.1f} s, {requests} requests, "
         f"{sent / 1e6:.1f} MB", f"{f['wall_s'] / wall:.2f}"),
        (f"daemon RSS around that sync of {n:,} reminders",
         f"before {f['rss_before'] / 1024:.1f} MiB, peak {f['rss_peak'] / 1024:.1f} MiB, "
         f"1 s after {f['rss_after'] / 1024:.1f} MiB ({grown:+.1f} MiB)",
         "back within 2 MiB of before: " + ("met" if abs(grown) <= 2 else "NOT met"),
         f"{f['rss_after'] / f['rss_before']:.2f}×"),
        (f"daemon RSS around the first sync of {n:,} reminders (right after start)",
         f"at READY {f['rss_ready'] / 1024:.1f} MiB, peak {f['rss_first_peak'] / 1024:.1f} MiB, "
         f"1 s after {f['rss_before'] / 1024:.1f} MiB ({first_grown:+.1f} MiB)",
         "back within 2 MiB of READY: " + ("met" if abs(first_grown) <= 2 else "NOT met"),
         f"{f['rss_before'] / f['rss_ready']:.2f}×"),
    ]


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


if __name__ == "__main__":
    sys.exit(main())
