"""The daemon as systemd sees it: a real process, a real notify socket."""

from __future__ import annotations

import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import REPO, Daemon, NotifySocket, write_config

WATCHDOG_USEC = 1_000_000          # systemd's WatchdogSec=1s: pings every 0.5 s
INTERVAL = WATCHDOG_USEC / 2_000_000


def test_ready_status_pings_and_clean_stop(tmp_path: Path, notify: NotifySocket, spawn) -> None:
    config = write_config(tmp_path)
    daemon: Daemon = spawn(config, notify, watchdog_usec=WATCHDOG_USEC)
    ready_at = notify.wait_message("READY=1", timeout=20)
    startup = ready_at - daemon.started_at
    assert startup < 10, f"READY after {startup:.2f}s"
    statuses = notify.statuses()
    assert statuses and statuses[0].startswith("ready: "), statuses
    assert "X posting off" in statuses[0] and "Telegram off" in statuses[0]
    # The watchdog is fed at WATCHDOG_USEC/2 while healthy.
    pings = notify.wait_count("WATCHDOG=1", 7, timeout=10, after=ready_at)
    gaps = [b - a for a, b in zip(pings, pings[1:], strict=False)]
    assert 0.8 * INTERVAL < statistics.median(gaps) < 1.3 * INTERVAL, gaps
    assert max(gaps) < 2 * INTERVAL, gaps
    # systemctl stop: STOPPING=1, exit 0 within 10 s.
    stop_sent = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    notify.wait_message("STOPPING=1", timeout=5, after=stop_sent)
    assert daemon.wait(10) == 0, daemon.log
    assert time.monotonic() - stop_sent < 10
    assert "<6>buzzbotd: SIGTERM received, stopping" in daemon.log
    assert "<6>buzzbotd: stopped" in daemon.log
    assert "Traceback" not in daemon.log


def test_no_pings_without_watchdog_usec(tmp_path: Path, notify: NotifySocket, spawn) -> None:
    daemon = spawn(write_config(tmp_path), notify)
    ready_at = notify.wait_message("READY=1", timeout=20)
    # Observe for three would-be intervals: absence can only be shown by waiting.
    time.sleep(3 * INTERVAL)
    assert notify.times_of("WATCHDOG=1") == []
    assert daemon.proc.poll() is None and ready_at


@pytest.mark.parametrize("part", ["loop", "scheduler", "db"])
def test_a_hung_part_stops_the_pings(tmp_path: Path, notify: NotifySocket, spawn,
                                     part: str) -> None:
    daemon = spawn(write_config(tmp_path), notify, watchdog_usec=WATCHDOG_USEC,
                   env={"BUZZBOTD_TEST_HANG": f"{part}:2"})
    ready_at = notify.wait_message("READY=1", timeout=20)
    notify.wait_count("WATCHDOG=1", 2, timeout=5, after=ready_at)   # healthy at first
    daemon.wait_log(f"test fault hook: {part} hangs now", timeout=10)
    hung_at = max(at for at, line in daemon.lines if f"{part} hangs now" in line)
    # Absence can only be shown by watching: five intervals, long enough that a
    # watchdog that kept pinging (even at half its pace) would be seen.
    time.sleep(5 * INTERVAL)
    late = [t - hung_at for t in notify.times_of("WATCHDOG=1") if t > hung_at + INTERVAL + 0.25]
    assert late == [], f"pings {late} s after {part} hung"
    assert daemon.proc.poll() is None, "the process must stay alive: systemd kills it"
    if part != "loop":      # a hung loop cannot log; the others are reported
        daemon.wait_log("unhealthy, not feeding the watchdog", timeout=5)


def test_second_instance_exits_75_and_stale_lock_does_not_block(
        tmp_path: Path, notify: NotifySocket, spawn) -> None:
    config = write_config(tmp_path)
    first = spawn(config, notify)
    notify.wait_message("READY=1", timeout=20)
    # Same lock file, separate state dir: the second must not even create it.
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    second_config = write_config(other_dir, daemon={"lock_file": str(tmp_path / "run" /
                                                                     "buzzbotd.lock")})
    started = time.monotonic()
    second = spawn(second_config)
    assert second.wait(10) == 75
    assert time.monotonic() - started < 5
    lock_path = tmp_path / "run" / "buzzbotd.lock"
    assert f"another buzzbotd (pid {first.pid}) holds {lock_path}" in second.log
    assert not (other_dir / "state").exists()
    assert "Traceback" not in second.log
    # status sees the running daemon.
    status = subprocess.run([sys.executable, "-m", "buzzbotd", "status", "--config", str(config)],
                            capture_output=True, text=True, cwd=REPO, timeout=30)
    assert f"daemon: running (pid {first.pid})" in status.stdout, status.stdout + status.stderr
    # kill -9 leaves the lock file behind with the dead pid; the next start is not blocked.
    first.kill9()
    assert lock_path.read_text().strip() == str(first.pid)
    notify2 = NotifySocket(tmp_path / "notify2.sock")
    try:
        third = spawn(config, notify2)
        notify2.wait_message("READY=1", timeout=20)
        assert lock_path.read_text().strip() == str(third.pid)
        assert third.terminate() == 0
    finally:
        notify2.close()


def test_unusable_database_is_a_clear_error(tmp_path: Path, spawn) -> None:
    config = write_config(tmp_path)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "buzzbotd.db").write_bytes(b"this is not a database" * 100)
    daemon = spawn(config)
    assert daemon.wait(20) == 1
    assert "cannot open the database" in daemon.log
    assert "restore the newest copy from" in daemon.log
    assert "Traceback" not in daemon.log


def test_a_database_from_a_newer_buzzbotd_is_exit_78_not_a_restart_loop(
        tmp_path: Path, spawn) -> None:
    """After a downgrade the old code must not touch the newer schema, and a
    restart cannot help: exit 78, which the unit's RestartPreventExitStatus
    keeps from restarting every RestartSec."""
    config = write_config(tmp_path)
    (tmp_path / "state").mkdir()
    db = tmp_path / "state" / "buzzbotd.db"
    sqlite3.connect(db).execute("PRAGMA user_version = 99").connection.close()
    daemon = spawn(config)
    assert daemon.wait(20) == 78
    assert "schema version 99, newer than this buzzbotd knows" in daemon.log
    assert "install the newer buzzbotd again or restore a backup" in daemon.log
    assert "Traceback" not in daemon.log
    status = subprocess.run([sys.executable, "-m", "buzzbotd", "status", "--config", str(config)],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    assert status.returncode == 78
    assert "newer than this buzzbotd knows" in status.stderr
    assert "start the daemon once" not in status.stderr
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] == 99


def test_a_status_line_that_is_not_latin_1_reaches_systemd(notify: NotifySocket,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """sdnotify encodes as Latin-1 and silently drops what it cannot encode; a
    STATUS= with "→" or "…" (a user's zone, an API's error text) must still
    arrive, as the UTF-8 systemd reads, and so must a READY=1 sent with it."""
    from buzzbotd.runtime.notify import Notifier
    monkeypatch.setenv("NOTIFY_SOCKET", notify.path)     # where sdnotify sends
    notifier = Notifier({"NOTIFY_SOCKET": notify.path})
    notifier.ready("ready: next tweet 08:00 Europe/Berlin → 07:00 UTC…")
    notifier.status("degraded: Sheets API answered 400: Ungültig → …")
    notify.wait_message("READY=1", timeout=5)
    notify.wait_message("STATUS=ready: next tweet 08:00 Europe/Berlin → 07:00 UTC…", timeout=5)
    notify.wait_message("STATUS=degraded: Sheets API answered 400: Ungültig → …", timeout=5)
