"""The figures of this round's parts (`make bench`, tools/bench/): the kill -9
trials with X's reads refused in a third of them, the same across all four
networks, each network's slot → POST time, RSS at READY with everything on, and
price alerts (the evaluation query, the delivery rate, idle CPU with alerts)."""

from __future__ import annotations

import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.support import Daemon, NotifySocket, rss_kib, write_config
from tools.bench.process import Row, _cpu_seconds, bare_import
from tools.bench.storage import timed_trials


def bench_crash_trials_refused(quick: bool) -> list[Row]:
    from tools.crash_trials import run_trials
    n = 3 if quick else 100
    r, minutes = timed_trials(run_trials, n, refused_share=1 / 3)
    refused, allowed = r["reads_refused"], r["reads_allowed"]
    return [(f"kill -9 trials, X's timeline reads refused in a third ({n} in {minutes:.0f} min)",
             f"slots with 0 / 1 / 2+ tweets: {r['slots_with_0']} / {r['slots_with_1']} / "
             f"{r['slots_with_2_or_more']}, {r['slots_posted']} recorded posted; per trial, "
             f"reads refused: {refused.get('posts_mean')} POSTs (max {refused.get('posts_max')}),"
             f" {refused.get('reads_mean')} reads; reads allowed: {allowed.get('posts_mean')} "
             f"POSTs, {allowed.get('reads_mean')} reads",
             f"{n} / {n} slots with exactly 1", f"{r['slots_with_1'] / n:.2f}")]


def bench_network_trials(quick: bool) -> list[Row]:
    from tools.network_trials import NETWORKS, run_trials
    n = 2 if quick else 100
    r, minutes = timed_trials(run_trials, n)
    rows = []
    for net in NETWORKS:
        posts = r[f"{net}_posts"]
        goal = "at most 1 (never read back)" if net == "channel" else "exactly 1"
        rows.append((f"kill -9 trials, all four networks on: {net} ({n} in {minutes:.0f} min)",
                     f"slots with 0 / 1 / 2+ posts: {posts.get('with_0', 0)} / "
                     f"{posts.get('with_1', 0)} / {posts.get('with_2_or_more', 0)}; "
                     f"states {r[f'{net}_states']}", f"{n} / {n} with {goal}",
                     f"{posts.get('with_1', 0) / n:.2f}"))
    return rows


def bench_networks(quick: bool) -> list[Row]:
    """Slot → each network's POST (median, max) with all four on, and RSS at READY
    with everything on (four networks, the bot, HTTP, alerts) against the bare import."""
    from tests.fakes.bluesky import CREATE_RECORD
    from tests.fakes.mastodon import POST_STATUS
    from tests.fakes.x import POST_TWEET
    from tests.support.x_world import SlotClock, hhmmss
    from tools.network_trials import CHANNEL, Networks
    n = 2 if quick else 10
    fakes = Networks()
    try:
        with tempfile.TemporaryDirectory() as d:
            clock = SlotClock(Path(d), fakes.x)
            due = [clock.due + timedelta(seconds=2 * i) for i in range(n)]
            config = fakes.config(Path(d), [hhmmss(when) for when in due])
            notify = NotifySocket(Path(d) / "notify.sock")
            daemon = Daemon(config, notify, **clock.daemon_args())
            try:
                notify.wait_message("READY=1", timeout=60)
                rss = rss_kib(daemon.pid)
                daemon.wait_log("database backed up to", timeout=60)
                clock.arrive(daemon, timeout=60)
                slots = [clock.real(when) for when in due]
                done = fakes.telegram.wait_until(
                    lambda: len(fakes.telegram.messages_to(CHANNEL)) >= n, timeout=n * 2 + 30)
                if not done:
                    raise RuntimeError(f"not every slot posted:\n{daemon.log}")
            finally:
                daemon.terminate()
                notify.close()
        lags = {
            "x": [r.at for r in fakes.x.requests if fakes.x.route(r) == POST_TWEET],
            "bluesky": [r.at for r in fakes.pds.requests if fakes.pds.route(r) == CREATE_RECORD],
            "mastodon": [r.at for r in fakes.mastodon.requests
                         if fakes.mastodon.route(r) == POST_STATUS],
            "channel": [s.wall for s in fakes.telegram.sent if s.chat_id == CHANNEL],
        }
    finally:
        fakes.stop()
    _, bare_rss = bare_import()
    rows = []
    for net, ats in lags.items():
        ms = [(at - slot) * 1000 for at, slot in zip(sorted(ats), slots, strict=False)]
        rows.append((f"slot time → POST at the {net} server ({len(ms)} slots, all four on)",
                     f"median {statistics.median(ms):.0f} ms, max {max(ms):.0f} ms",
                     "goal ≤ 100 ms median", f"{statistics.median(ms) / 100:.2f}× goal"))
    rows.append(("RSS at READY, X + Bluesky + Mastodon + channel + the bot on",
                 f"{rss / 1024:.1f} MiB", f"bare import {bare_rss / 1024:.1f} MiB; goal ≤ +8 MiB",
                 f"+{(rss - bare_rss) / 1024:.1f} MiB"))
    return rows


def bench_price_alerts(quick: bool) -> list[Row]:
    """100,000 alerts, one price change crossing 1,000 of them: the evaluation (one
    indexed range per side), against the bare index count of the same range; then
    the 1,000 messages through the bot's limiter to the fake Bot API."""
    from buzzbotd.db import SqliteOwner
    from buzzbotd.db.models import PriceAlert
    from buzzbotd.db.raw import rows as raw_rows
    from buzzbotd.pricealerts import crossing
    n, crossed = (10_000, 100) if quick else (100_000, 1_000)
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as d:
        owner = SqliteOwner(Path(d) / "buzzbotd.db")
        owner.start()

        def fill() -> None:
            batch = [dict(owner_id=i, chat_id=i, kind="above", currency="usd",
                          level=70000 + i, repeats=False, state="armed", up_level=70000 + i,
                          enabled=True, created_at=now) for i in range(n)]
            for start in range(0, n, 5000):
                PriceAlert.insert_many(batch[start:start + 5000]).execute()
        owner.call(fill)
        price = 70000 + crossed - 0.5
        baseline = []
        for _ in range(11):
            started = time.perf_counter()
            owner.call(raw_rows, "SELECT count(*) FROM price_alert WHERE currency = 'usd' AND "
                                 "up_level <= ? AND enabled = 1", price)
            baseline.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        found = owner.call(crossing.evaluate, "usd", price, now)
        took = (time.perf_counter() - started) * 1000
        owner.stop()
    rate = _alert_delivery(crossed)
    return [
        (f"price alerts: one change crossing {found:,} of {n:,} (evaluated and recorded)",
         f"{took:.1f} ms", f"bare index count of the range {statistics.median(baseline):.1f} ms;"
         " goal ≤ 20 ms", f"{took / 20:.2f}× goal"),
        (f"price alerts: {rate['sent']} crossings delivered/s (once each: "
         f"{rate['exactly_once']})", f"{rate['per_s']:.1f}/s, 429s {rate['too_many']}",
         "the server's limit 30/s; goal ≥ 27/s", f"{rate['per_s'] / 30:.2f}"),
    ]


def _alert_delivery(n: int) -> dict:
    """n users each with an alert the price has crossed: the check's sends, timed at
    the fake Bot API."""
    from buzzbotd.db.models import PriceAlert
    from tests.support.telegram_world import BotInProcess
    with tempfile.TemporaryDirectory() as d:
        bot = BotInProcess(Path(d)).start()
        try:
            now = datetime.now(UTC)
            bot.owner.call(lambda: PriceAlert.insert_many([
                dict(owner_id=10_000 + i, chat_id=10_000 + i, kind="above", currency="usd",
                     level=60000, repeats=False, state="armed", up_level=60000, enabled=True,
                     created_at=now) for i in range(n)]).execute())
            bot.bot.check_alerts()
            bot.telegram.wait_until(lambda: len(bot.telegram.sent) >= n, n / 20 + 30)
            sent = list(bot.telegram.sent)
            elapsed = (max(s.at for s in sent) - min(s.at for s in sent)) if sent else 1.0
            chats = [s.chat_id for s in sent]
            return {"sent": len(sent), "per_s": (len(sent) - 1) / max(elapsed, 1e-3),
                    "exactly_once": len(set(chats)) == len(chats) == n,
                    "too_many": sum(bot.telegram.too_many.values())}
        finally:
            bot.close()


def bench_idle_with_alerts(quick: bool) -> list[Row]:
    """CPU over a minute of a daemon with the bot on and 1,000 waiting alerts checked
    every 60 s (one price fetch, two index probes a minute)."""
    from buzzbotd.db import SqliteOwner
    from buzzbotd.db.models import PriceAlert
    from tests.fakes.price import FakePrice
    from tests.fakes.telegram import TOKEN, FakeTelegram
    seconds = 5 if quick else 65       # a minute and the check that falls in it
    price, telegram = FakePrice().start(), FakeTelegram().start()
    try:
        with tempfile.TemporaryDirectory() as d:
            config = write_config(Path(d), price={"url": price.endpoint},
                                  telegram={"enabled": True, "api_base": telegram.url,
                                            "token": TOKEN, "alert_check_s": 60})
            (Path(d) / "state").mkdir()
            owner = SqliteOwner(Path(d) / "state" / "buzzbotd.db")
            owner.start()
            now = datetime.now(UTC)
            owner.call(lambda: PriceAlert.insert_many([
                dict(owner_id=i, chat_id=i, kind="above", currency="usd", level=10**6 + i,
                     repeats=False, state="armed", up_level=10**6 + i, enabled=True,
                     created_at=now) for i in range(1000)]).execute())
            owner.stop()
            notify = NotifySocket(Path(d) / "notify.sock")
            daemon = Daemon(config, notify)
            try:
                notify.wait_message("READY=1", timeout=60)
                daemon.wait_log("connected to Telegram", timeout=60)
                before = _cpu_seconds(daemon.pid)
                fetched = len(price.requests)
                time.sleep(seconds)              # the measurement is of idleness itself
                used = _cpu_seconds(daemon.pid) - before
                fetches = len(price.requests) - fetched
            finally:
                daemon.terminate()
                notify.close()
    finally:
        price.stop()
        telegram.stop()
    share = used / seconds * 100
    return [(f"CPU while idle over {seconds} s, bot on, 1,000 alerts checked every 60 s "
             f"({fetches} price fetches)", f"{share:.3f}% of a core ({used * 1000:.0f} ms)",
             "goal ≤ 0.05%", f"{share / 0.05:.1f}× goal")]
