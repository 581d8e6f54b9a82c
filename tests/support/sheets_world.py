"""The Sheets sync against the fake Sheets API and token endpoint: a test key,
a config, and what the worksheets must hold, read straight from SQLite.

Shared by the Sheets and export tests and by tools/bench/: no pytest here.
"""

from __future__ import annotations

import re
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.fakes.sheets import SPREADSHEET_ID, FakeSheets, ServiceAccountKey, make_key
from tests.support import read_sqlite, write_config

# Each table as the operator sees it: header, then SQL giving the same columns.
TABLE_SQL = {
    "users": ("user_id,chat_id,timezone,blocked,created_at,updated_at",
              "SELECT id, chat_id, timezone, blocked, created_at, updated_at "
              "FROM telegram_user ORDER BY id"),
    "reminders": ("reminder_id,user_id,chat_id,local_time,timezone,enabled,next_due_at,"
                  "last_sent_local_date,created_at",
                  "SELECT id, user_id, chat_id, local_time, timezone, enabled, next_due_at, "
                  "last_sent_local_date, created_at FROM reminder ORDER BY id"),
    "posts": ("post_id,slot_key,kind,due_at,state,tweet_id,text,reason,attempts,created_at,"
              "updated_at,network",
              "SELECT id, slot_key, kind, due_at, state, tweet_id, text, reason, attempts, "
              "created_at, updated_at, network FROM post ORDER BY id"),
}
BOOLEAN_COLUMNS = {"blocked", "enabled"}


def start_fake(directory: Path) -> tuple[FakeSheets, ServiceAccountKey]:
    """A running fake and a fresh key whose token_uri is the fake's."""
    fake = FakeSheets().start()
    key = make_key(directory, fake.token_uri)
    fake.public_key = key.public
    return fake, key


def sheets_config(directory: Path, fake: FakeSheets, key: ServiceAccountKey,
                  interval_s: int = 300, **sections: dict[str, Any]) -> Path:
    return write_config(directory, sheets={"enabled": True, "spreadsheet_id": SPREADSHEET_ID,
                                           "api_base": fake.url, "interval_s": interval_s,
                                           "service_account_file": str(key.path)}, **sections)


def database_rows(database: Path, table: str) -> tuple[list[str], list[dict[str, Any]]]:
    """The table's columns and rows, with SQLite's own types (0/1 for booleans)."""
    header, sql = TABLE_SQL[table]
    columns = header.split(",")
    return columns, [dict(zip(columns, row, strict=True)) for row in read_sqlite(database, sql)]


def expected_sheet(database: Path, table: str) -> list[list[Any]]:
    """What the worksheet must hold: the header, then each row; ids as text, booleans
    as booleans, NULL as an empty cell."""
    columns, rows = database_rows(database, table)
    out: list[list[Any]] = [list(columns)]
    for row in rows:
        cells = []
        for column, value in row.items():
            if value is None:
                cells.append("")
            elif column in BOOLEAN_COLUMNS:
                cells.append(bool(value))
            elif column.endswith("_id"):
                cells.append(str(value))
            else:
                cells.append(value)
        out.append(cells)
    return out


SYNCED = "sheets: synced "
_SYNC_LINE = re.compile(r"\((\d+) requests, (\d+) bytes, ([0-9.]+) s\)")


def sync_figures(n_reminders: int, interval_s: int = 30) -> dict[str, Any]:
    """A daemon (Telegram and X off) whose database holds `n_reminders` users
    with one reminder each, syncing to the fake every `interval_s`: the second
    sync's requests, bytes sent and wall time, and the daemon's RSS before,
    during (peak, sampled every 20 ms) and 1 s after it; also its RSS at
    READY (before the first sync) and the first sync's peak."""
    from tests.support import Daemon, NotifySocket, rss_kib
    from tests.support.telegram_world import seed_reminders

    with tempfile.TemporaryDirectory(prefix="buzzbotd-sheets-bench-") as tmp:
        directory = Path(tmp)
        fake, key = start_fake(directory / "keys")
        config = sheets_config(directory, fake, key, interval_s=interval_s)
        seed_reminders(directory / "state" / "buzzbotd.db", n_reminders,
                       first_due=datetime.now(UTC) + timedelta(hours=1))
        notify = NotifySocket(directory / "notify.sock")
        daemon = Daemon(config, notify)
        peak, stop = [], threading.Event()

        def sample() -> None:
            while not stop.wait(0.02):
                peak.append(rss_kib(daemon.pid))

        sampler = threading.Thread(target=sample, name="rss-sampler", daemon=True)
        try:
            notify.wait_message("READY=1", timeout=60)
            ready = rss_kib(daemon.pid)
            sampler.start()
            first = daemon.wait_log(SYNCED, timeout=600)
            started = time.monotonic()
            time.sleep(1.0)                       # the first sync's buffers settle
            first_peak = max(peak, default=ready)
            before = rss_kib(daemon.pid)
            peak[:] = [before]
            second = daemon.wait_log_any((SYNCED,), timeout=interval_s + 600, after=started)
            time.sleep(1.0)
            stop.set()
            sampler.join()
            after = rss_kib(daemon.pid)
            rows = len(fake.values("reminders")) - 1
        finally:
            daemon.terminate()
            notify.close()
            fake.stop()
    requests, sent, wall = _SYNC_LINE.search(second).groups()  # type: ignore[union-attr]
    first_requests, first_sent, first_wall = _SYNC_LINE.search(first).groups()  # type: ignore[union-attr]
    return {"rows": rows, "requests": int(requests), "bytes": int(sent), "wall_s": float(wall),
            "first": (int(first_requests), int(first_sent), float(first_wall)),
            "rss_ready": ready, "rss_first_peak": first_peak,
            "rss_before": before, "rss_peak": max(peak), "rss_after": after}
