"""The operator's window against real clients: promtool, a real Prometheus server,
headless Chromium, curl-like GETs; the daemon a real process.

promtool, prometheus and chromium are Debian packages (`prometheus`, `chromium`).
Without them these tests fail when $CI is set, and are skipped loudly otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from buzzbotd.timeofday import slot_key
from tests.fakes import Fault
from tests.fakes.price import FakePrice
from tests.fakes.telegram import TOKEN, FakeTelegram
from tests.fakes.x import CREDENTIALS, POST_TWEET, FakeX
from tests.support import REPO, Daemon, free_port, wait_until, write_config
from tests.support.telegram_world import ADMIN, seed_reminders
from tests.support.x_world import TEMPLATE, SlotClock, hhmmss, seed_posts, wait_final

ARTIFACTS = Path(os.environ.get("BUZZBOTD_ARTIFACTS", tempfile.gettempdir())) / "buzzbotd-http"


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path:
        return path
    message = (f"{tool} is not installed (apt-get install prometheus chromium): the HTTP "
               "endpoints were NOT checked with it")
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def get(url: str, timeout: float = 5) -> tuple[int, str, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


def database(config: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{config.parent / 'state' / 'buzzbotd.db'}?mode=ro", uri=True)


def x_http_config(directory: Path, x: FakeX, price: FakePrice, times: list[str], port: int,
                  **sections: dict[str, Any]) -> Path:
    return write_config(directory, price={"url": price.endpoint, "timeout_s": 2},
                        x={"enabled": True, "api_base": x.url, "times": times,
                           "timezone": "UTC", "template": TEMPLATE, **CREDENTIALS},
                        http={"listen": f"127.0.0.1:{port}"}, **sections)


def start_and_post_one_slot(tmp_path: Path, spawn, notify, x: FakeX, price: FakePrice,
                            clock: SlotClock | None = None) -> tuple[Path, int, datetime]:
    """A daemon with [http] on and one slot (`clock`'s), once it is posted."""
    port = free_port()
    clock = clock or SlotClock(tmp_path, x)
    due = clock.due
    config = x_http_config(tmp_path, x, price, [hhmmss(due)], port)
    daemon: Daemon = spawn(config, notify, **clock.daemon_args())
    notify.wait_message("READY=1", timeout=20)
    clock.arrive(daemon)
    assert ": posted" in wait_final(daemon, slot_key(due), timeout=30)
    return config, port, due


# -- the listen address ----------------------------------------------------------


@pytest.mark.parametrize("value", ["8780", "localhost", "127.0.0.1:0", "127.0.0.1:65536",
                                   "127.0.0.1:http", "bad host:80", "[::zz]:80", 8780])
def test_a_bad_listen_value_is_a_config_error(tmp_path, spawn, value) -> None:
    daemon: Daemon = spawn(write_config(tmp_path, http={"listen": value}))
    assert daemon.wait(20) == 78, daemon.log
    assert "http.listen" in daemon.log and 'expected "host:port"' in daemon.log, daemon.log
    assert "Traceback" not in daemon.log


def test_a_port_in_use_stops_the_start_naming_the_address(tmp_path, spawn, notify) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        daemon: Daemon = spawn(write_config(tmp_path, http={"listen": f"127.0.0.1:{port}"}),
                               notify)
        assert daemon.wait(20) == 1, daemon.log
    assert f"cannot listen on 127.0.0.1:{port}: it is in use" in daemon.log, daemon.log
    assert "Traceback" not in daemon.log
    assert not any(m == "READY=1" for _, m in notify.messages)


# -- /metrics with promtool and Prometheus ------------------------------------------


def test_metrics_pass_promtool_and_a_real_prometheus_scrape(tmp_path, spawn, notify, x,
                                                            price) -> None:
    promtool, prometheus = need("promtool"), need("prometheus")
    seed_reminders(tmp_path / "state" / "buzzbotd.db", 25, datetime.now(UTC) + timedelta(hours=3),
                   spread_s=3600)
    config, port, due = start_and_post_one_slot(tmp_path, spawn, notify, x, price)

    code, text, headers = get(f"http://127.0.0.1:{port}/metrics")
    assert code == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=30)
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), \
        check.stdout + check.stderr

    # A real Prometheus scrapes it; its values must be the database's.
    web = free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: buzzbotd\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n")
    server = subprocess.Popen(
        [prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{web}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        def query(q: str) -> list[dict[str, Any]]:
            url = f"http://127.0.0.1:{web}/api/v1/query?" + urllib.parse.urlencode({"query": q})
            return json.loads(get(url)[1])["data"]["result"]

        def scraped() -> list[dict[str, Any]]:
            try:
                return query('up{job="buzzbotd"}')
            except (urllib.error.URLError, ConnectionError, KeyError, ValueError):
                return []
        up = wait_until(scraped, 60, "Prometheus scraped buzzbotd", interval=0.25)
        assert up and up[0]["value"][1] == "1", up

        def value(q: str) -> float:
            result = query(q)
            assert len(result) == 1, (q, result)
            return float(result[0]["value"][1])

        db = database(config)
        posted = db.execute("SELECT count(*) FROM post WHERE state = 'posted'").fetchone()[0]
        enabled = db.execute("SELECT count(*) FROM reminder WHERE enabled").fetchone()[0]
        users = db.execute("SELECT count(*) FROM telegram_user").fetchone()[0]
        last = db.execute("SELECT max(updated_at) FROM post WHERE state = 'posted'").fetchone()[0]
        db.close()
        assert posted == 1 and enabled == 25
        assert value('buzzbotd_tweets_total{outcome="posted"}') == posted
        assert value('buzzbotd_reminders{state="enabled"}') == enabled
        assert value("buzzbotd_users") == users
        assert value("buzzbotd_last_post_timestamp_seconds") == \
            datetime.strptime(last, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
        assert value("buzzbotd_next_slot_timestamp_seconds") == \
            (due + timedelta(days=1)).timestamp()
        assert value('buzzbotd_up{part="x"}') == 1
        assert value("buzzbotd_slot_post_latency_seconds_count") == 1
        assert value("buzzbotd_process_resident_memory_bytes") > 10e6
    finally:
        server.terminate()
        server.wait(20)


def test_the_example_alert_rules_are_valid() -> None:
    promtool = need("promtool")
    rules = REPO / "doc" / "prometheus-alerts.yml"
    check = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True,
                           text=True, timeout=30)
    assert check.returncode == 0 and "SUCCESS" in check.stdout, check.stdout + check.stderr


# -- the page in Chromium -----------------------------------------------------------


def chromium(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    binary = need("chromium")
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", *args, url],
            capture_output=True, text=True, timeout=90)


def test_the_page_in_headless_chromium_at_desktop_and_phone_widths(tmp_path, spawn, notify, x,
                                                                   price) -> None:
    need("chromium")
    seed_reminders(tmp_path / "state" / "buzzbotd.db", 3, datetime.now(UTC) + timedelta(hours=3))
    # Seeded back from the slot: the chart's 30 days end at the daemon's clock, near it.
    clock = SlotClock(tmp_path, x)
    shown = seed_posts(tmp_path / "state" / "buzzbotd.db", clock.due)
    config, port, due = start_and_post_one_slot(tmp_path, spawn, notify, x, price, clock)
    url = f"http://127.0.0.1:{port}/"

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for name, size in (("desktop", "1280,1000"), ("phone", "390,1400")):
        shot = ARTIFACTS / f"status-page-{name}.png"
        shot.unlink(missing_ok=True)
        result = chromium(url, f"--window-size={size}", f"--screenshot={shot}",
                          "--hide-scrollbars")
        assert shot.exists() and shot.stat().st_size > 10_000, result.stderr[-2000:]
        print(f"screenshot ({name}): {shot}")

    dom = chromium(url, "--dump-dom").stdout
    assert "<svg" in dom, dom[:2000]
    tweet = x.tweets[-1]
    assert tweet.text in dom
    assert f'href="https://x.com/i/web/status/{tweet.id}"' in dom
    # One dot per posted slot of the last 30 days: the seeded ones and the real one.
    assert len(re.findall(r'<circle class="pt"', dom)) == shown + 1
    assert re.search(r"<td>UTC</td><td>3</td>", dom), "reminders by timezone"
    assert '<meta http-equiv="refresh"' in dom
    assert not re.search(r'(src|href)="(https?:)?//(?!x\.com/i/web/status/)', dom), \
        "an external asset"
    # No personal data: no seeded user or chat id anywhere.
    assert "10000000" not in dom


# -- /health -------------------------------------------------------------------------


def test_health_turns_503_when_a_part_hangs_and_200_after(tmp_path, spawn, notify) -> None:
    port = free_port()
    usec = 2_000_000                      # WatchdogSec=2s: the interval is 1 s
    interval = usec / 2_000_000
    daemon: Daemon = spawn(write_config(tmp_path, http={"listen": f"127.0.0.1:{port}"}), notify,
                           watchdog_usec=usec, env={"BUZZBOTD_TEST_HANG": "scheduler:4:5"})
    notify.wait_message("READY=1", timeout=20)
    code, body, _ = get(f"http://127.0.0.1:{port}/health")
    assert code == 200 and json.loads(body) == {
        "status": "ok", "parts": {"loop": "ok", "scheduler": "ok", "database": "ok"}}, body

    daemon.wait_log("test fault hook: scheduler hangs now", timeout=15)
    hung_at = time.monotonic()
    while True:
        code, body, _ = get(f"http://127.0.0.1:{port}/health")
        if code != 200 or time.monotonic() - hung_at > 10:
            break
        time.sleep(0.05)
    seen = time.monotonic() - hung_at
    assert code == 503, body
    answer = json.loads(body)
    assert answer["status"] == "unhealthy" and answer["failing"] == ["scheduler"], answer
    assert answer["parts"]["scheduler"].startswith("scheduler silent for"), answer
    assert seen <= interval + 0.5, f"503 only {seen:.2f}s after the hang"

    code, body, _ = wait_until(lambda: (answer := get(f"http://127.0.0.1:{port}/health"))[0]
                               == 200 and answer, 15, "/health 200 again", interval=0.1)
    assert code == 200 and json.loads(body)["status"] == "ok", body
    code, body, _ = get(f"http://127.0.0.1:{port}/api/status")
    assert code == 200 and json.loads(body)["health"]["pid"] == daemon.pid


# -- alerts through the real bot --------------------------------------------------------


def test_a_failing_slot_alerts_once_and_its_recovery_is_told(tmp_path, spawn, notify, x,
                                                             price) -> None:
    telegram = FakeTelegram().start()
    try:
        clock = SlotClock(tmp_path, x)
        first = clock.due
        slots = [first, first + timedelta(seconds=3), first + timedelta(seconds=6)]
        config = write_config(
            tmp_path, price={"url": price.endpoint, "timeout_s": 2},
            x={"enabled": True, "api_base": x.url, "times": [hhmmss(s) for s in slots],
               "timezone": "UTC", "template": TEMPLATE, **CREDENTIALS},
            telegram={"enabled": True, "api_base": telegram.url, "token": TOKEN,
                      "admin_ids": [ADMIN], "alert_admins": True})
        x.add_fault(POST_TWEET, Fault.status_code(403, {"title": "Forbidden", "status": 403,
                                                        "detail": "app suspended"}), times=2)
        daemon: Daemon = spawn(config, notify, **clock.daemon_args())
        notify.wait_message("READY=1", timeout=30)
        clock.arrive(daemon)
        assert ": failed" in wait_final(daemon, slot_key(slots[0]), timeout=30)
        message = telegram.wait_for_message(ADMIN, "X posting", timeout=10)
        assert slot_key(slots[0]) in message.text and "403" in message.text, message.text
        assert ": failed" in wait_final(daemon, slot_key(slots[1]), timeout=30)
        assert ": posted" in wait_final(daemon, slot_key(slots[2]), timeout=30)
        telegram.wait_for_message(ADMIN, "Resolved: X posting", timeout=10)
        daemon.wait_log("alert x not sent", timeout=5)
        to_admin = telegram.messages_to(ADMIN)
        assert [m for m in to_admin if m.startswith("⚠️")] == [message.text], to_admin
        assert len([m for m in to_admin if "Resolved" in m]) == 1, to_admin
    finally:
        telegram.stop()


def test_a_start_after_kill_9_alerts_the_admins_who_did_not_mute(tmp_path, spawn, notify
                                                                  ) -> None:
    telegram = FakeTelegram().start()
    price = FakePrice().start()
    muted = ADMIN - 1
    try:
        config = write_config(
            tmp_path, price={"url": price.endpoint, "timeout_s": 2},
            telegram={"enabled": True, "api_base": telegram.url, "token": TOKEN,
                      "admin_ids": [muted, ADMIN], "alert_admins": True})
        first: Daemon = spawn(config, notify)
        notify.wait_message("READY=1", timeout=30)
        assert "Alerts off for you" in telegram.ask(muted, "/alerts off")
        first.kill9()
        second: Daemon = spawn(config)
        telegram.wait_for_message(ADMIN, "unclean stop", timeout=30)
        second.wait_log(f"alert unclean sent to admin {ADMIN}", timeout=5)
        assert not any("unclean" in m for m in telegram.messages_to(muted))
        assert "the previous run did not stop cleanly" in second.log
        assert second.terminate() == 0
        third: Daemon = spawn(config)
        third.wait_log("ready:", timeout=30)
        assert "did not stop cleanly" not in third.log
    finally:
        telegram.stop()
        price.stop()


# -- freshness: the counts are kept by the database's triggers, not cached ---------------


def series(port: int, name: str) -> float:
    """One sample of /metrics, read right now."""
    code, text, _ = get(f"http://127.0.0.1:{port}/metrics")
    assert code == 200, text
    found = [line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith(name + " ")]
    assert len(found) == 1, (name, text)
    return float(found[0])


def test_metrics_and_page_show_a_reminder_as_soon_as_the_bot_confirms_it(tmp_path, spawn,
                                                                         notify) -> None:
    """Counts at 100k reminders come from tables the triggers keep (buzzbotd.db.tally);
    the bound is zero: the answer after the bot's reply already counts the change."""
    seed_reminders(tmp_path / "state" / "buzzbotd.db", 1000,
                   datetime.now(UTC) + timedelta(hours=3), spread_s=3600)
    telegram = FakeTelegram().start()
    price = FakePrice().start()
    try:
        port = free_port()
        config = write_config(tmp_path, price={"url": price.endpoint, "timeout_s": 2},
                              telegram={"enabled": True, "api_base": telegram.url,
                                        "token": TOKEN},
                              http={"listen": f"127.0.0.1:{port}"})
        spawn(config, notify)
        notify.wait_message("READY=1", timeout=30)
        enabled, users = 'buzzbotd_reminders{state="enabled"}', "buzzbotd_users"
        assert (series(port, enabled), series(port, users)) == (1000, 1000)
        user = ADMIN + 1
        assert telegram.ask(user, "/remind 08:30 Asia/Kolkata").startswith("Done!")
        assert (series(port, enabled), series(port, users)) == (1001, 1001)
        assert re.search(r"<td>Asia/Kolkata</td><td>1</td>",
                         get(f"http://127.0.0.1:{port}/")[1]), "reminders by timezone"
        assert telegram.ask(user, "/unremind") == "Removed 1 reminder."
        assert series(port, enabled) == 1000
        db = database(config)
        assert db.execute("SELECT count(*) FROM reminder WHERE enabled").fetchone()[0] == 1000
        db.close()
    finally:
        telegram.stop()
        price.stop()


# -- what an unauthenticated client may not learn ------------------------------------


def test_api_status_names_no_spreadsheet_account_or_database(tmp_path, spawn, notify) -> None:
    from tests.fakes.sheets import CLIENT_EMAIL, SPREADSHEET_ID
    from tests.support.sheets_world import sheets_config, start_fake

    fake, key = start_fake(tmp_path / "keys")
    fake.spreadsheet_id = "1SomeOtherSpreadsheetId_0000000000"   # ours is "not found"
    try:
        port = free_port()
        daemon: Daemon = spawn(sheets_config(tmp_path, fake, key,
                                             http={"listen": f"127.0.0.1:{port}"}), notify)
        notify.wait_message("READY=1", timeout=30)
        daemon.wait_log("sheets: sync of spreadsheet", timeout=30)
        deadline = time.monotonic() + 10
        while True:
            code, body, _ = get(f"http://127.0.0.1:{port}/api/status")
            sheets = json.loads(body)["sheets"]
            if sheets["last_error"] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        fake.stop()
    assert code == 200 and sheets["enabled"], body
    # The operator still learns what is wrong, and where to look...
    assert sheets["last_error"].startswith("spreadsheet (sheets.spreadsheet_id) not found "
                                           "(404)"), sheets
    assert "share the spreadsheet with (the service account)" in sheets["last_error"]
    # ... but not the identifiers, which the local `buzzbotd status` shows.
    for identifier in (SPREADSHEET_ID, CLIENT_EMAIL, str(tmp_path)):
        assert identifier not in body, identifier
    assert json.loads(body)["database"] == "sqlite"
    local = subprocess.run([sys.executable, "-m", "buzzbotd", "status", "--config",
                            str(tmp_path / "buzzbotd.toml")], capture_output=True, text=True,
                           timeout=30, cwd=REPO)
    assert SPREADSHEET_ID in local.stdout, local.stdout + local.stderr
