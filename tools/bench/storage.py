"""The figures of the state: database writes through the owner, slot latency, the
kill -9 and failover trials, reminder bursts and memory, the Sheets sync
(`make bench`, tools/bench/)."""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.support import REPO, Daemon, NotifySocket, write_config
from tools.bench.process import Row, bare_import


def _write_post(n: int) -> None:
    from buzzbotd.db import Post, PostEvent
    now = datetime.now(UTC)
    post = Post.create(slot_key=f"bench-{n}-{time.monotonic_ns()}", kind="manual", due_at=now,
                       state="posted", text="bench", created_at=now, updated_at=now)
    PostEvent.create(post=post, at=now, event="posted")


def bench_database(quick: bool) -> list[Row]:
    import peewee

    from buzzbotd.db import SqliteOwner, database, migrations
    from buzzbotd.db.sqlite import PRAGMAS
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
        owner = SqliteOwner(Path(d, "state", "buzzbotd.db"))
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


def timed_trials(run_trials: Callable[..., dict], n: int, **options: Any
                 ) -> tuple[dict, float]:
    """`run_trials(n, workdir, **options)` in a scratch directory: its result, and
    the minutes it took."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as d:
        result = run_trials(n, Path(d), **options)
    return result, (time.monotonic() - started) / 60


def bench_crash_trials(quick: bool) -> list[Row]:
    from tools.crash_trials import run_trials
    n = 3 if quick else 100
    r, minutes = timed_trials(run_trials, n)
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
