"""The Sheets sync against the fake Sheets API and token endpoint: a test key,
a config, and what the worksheets must hold, read straight from SQLite.

Shared by the Sheets and export tests and by tests/benchmarks.py: no pytest here.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from tests.fakes.sheets import SPREADSHEET_ID, FakeSheets, ServiceAccountKey, make_key
from tests.harness import write_config

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
              "updated_at",
              "SELECT id, slot_key, kind, due_at, state, tweet_id, text, reason, attempts, "
              "created_at, updated_at FROM post ORDER BY id"),
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
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        columns = header.split(",")
        return columns, [dict(zip(columns, row, strict=True)) for row in db.execute(sql)]
    finally:
        db.close()


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
