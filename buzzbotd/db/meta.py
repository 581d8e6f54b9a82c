"""Durable values: small named values in the `meta` table that must survive
restarts (the pause, the first start, the heartbeat, the Sheets sync's health).
Not to be confused with a slot's `post.state` (ledger.py).

Every function runs inside the database owner (or on a read-only connection).
"""

from __future__ import annotations

from datetime import datetime

from buzzbotd.db.models import Meta, parse_utc, utc_text
from buzzbotd.db.raw import execute, rows

PAUSED = "x.paused"
PAUSED_SINCE = "x.paused_since"
LAST_PAUSE = "x.last_pause"          # "<from>/<to>", UTC
FIRST_START = "daemon.first_start"
HEARTBEAT = "daemon.heartbeat_at"
HEALTH = "daemon.health"
DEGRADED = "daemon.degraded"         # JSON {part: [reason, since]}, written with the heartbeat
TELEGRAM_CONFLICT = "telegram.conflict_at"
PRICE_SOURCE = "price.source"        # "<source> <fetched at>" of the last good quote


def get(key: str, default: str | None = None) -> str | None:
    row = Meta.get_or_none(Meta.key == key)
    return row.value if row else default


def put(key: str, value: str) -> None:
    put_many({key: value})


def put_many(values: dict[str, str]) -> None:
    # An upsert both backends speak (SQLite's INSERT OR REPLACE is not PostgreSQL);
    # plain SQL, as the heartbeat writes it twice a minute (buzzbotd.db.raw).
    if values:
        execute("INSERT INTO meta (key, value) VALUES " + ", ".join(["(?, ?)"] * len(values))
                + " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                *(item for pair in values.items() for item in pair))


def snapshot() -> dict[str, str]:
    """Every value in one query (status reads several; building each query costs
    more than running it)."""
    return dict(rows("SELECT key, value FROM meta"))


def as_time(value: str | None) -> datetime | None:
    return parse_utc(value) if value else None


def get_time(key: str) -> datetime | None:
    return as_time(get(key))


def put_time(key: str, when: datetime) -> None:
    put(key, utc_text(when))


def first_start(now: datetime) -> datetime:
    """When the daemon first ran on this database; catch-up never reaches before it."""
    existing = get_time(FIRST_START)
    if existing is None:
        put_time(FIRST_START, now)
        return now
    return existing


def paused() -> bool:
    return get(PAUSED) == "1"


def set_paused(value: bool, now: datetime) -> None:
    """/pause and /resume. The last pause's interval is kept, so a slot that
    passed while paused stays skipped even if its job runs after /resume."""
    if value and not paused():
        put_time(PAUSED_SINCE, now)
    elif not value and paused():
        put(LAST_PAUSE, f"{get(PAUSED_SINCE) or utc_text(now)}/{utc_text(now)}")
    put(PAUSED, "1" if value else "0")


def paused_at(when: datetime) -> bool:
    """Whether posting is paused now, or was paused at `when`."""
    if paused():
        return True
    start, _, end = (get(LAST_PAUSE) or "").partition("/")
    return bool(end) and parse_utc(start) <= when <= parse_utc(end)


# -- the Google Sheets sync (shown by `status`; /metrics reads the same keys) --

SHEETS_LAST_OK = "sheets.last_ok_at"
SHEETS_LAST_ERROR = "sheets.last_error"          # "" once a sync succeeds again
SHEETS_FAILING_SINCE = "sheets.failing_since"    # the first failure of the current run of them


def record_sheets_ok(now: datetime) -> None:
    put_many({SHEETS_LAST_OK: utc_text(now), SHEETS_LAST_ERROR: "", SHEETS_FAILING_SINCE: ""})


def record_sheets_error(message: str, now: datetime) -> None:
    put_many({SHEETS_LAST_ERROR: message,
              SHEETS_FAILING_SINCE: get(SHEETS_FAILING_SINCE) or utc_text(now)})
