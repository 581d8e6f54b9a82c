"""The three tables an operator sees outside the daemon: users, reminders and
posts, as `buzzbotd export` prints them and the Sheets sync writes them.

Rows are read in pages ordered by primary key (keyset, not OFFSET), so a
reader of 100,000 reminders holds the database for a few milliseconds at a
time and never the whole table in memory at once. `read_page` reads only;
it runs inside the database owner or on a read-only connection.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from buzzbotd.db.models import Post, Reminder, TelegramUser, database

PAGE_ROWS = 5000
Value = int | str | bool | None


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]
    fields: tuple[Any, ...]         # peewee fields, in column order; the first is the key
    booleans: frozenset[int] = frozenset()   # column positions SQLite stores as 0/1

    def row(self, raw: tuple) -> tuple[Value, ...]:
        if not self.booleans:
            return raw
        return tuple(bool(v) if i in self.booleans and v is not None else v
                     for i, v in enumerate(raw))


TABLES: dict[str, Table] = {
    "users": Table(
        "users",
        ("user_id", "chat_id", "timezone", "blocked", "created_at", "updated_at"),
        (TelegramUser.id, TelegramUser.chat_id, TelegramUser.timezone, TelegramUser.blocked,
         TelegramUser.created_at, TelegramUser.updated_at),
        frozenset({3})),
    "reminders": Table(
        "reminders",
        ("reminder_id", "user_id", "chat_id", "local_time", "timezone", "enabled",
         "next_due_at", "last_sent_local_date", "created_at"),
        (Reminder.id, Reminder.user, Reminder.chat_id, Reminder.local_time, Reminder.timezone,
         Reminder.enabled, Reminder.next_due_at, Reminder.last_sent_local_date,
         Reminder.created_at),
        frozenset({5})),
    "posts": Table(
        "posts",
        ("post_id", "slot_key", "kind", "due_at", "state", "tweet_id", "text", "reason",
         "attempts", "created_at", "updated_at", "network"),
        (Post.id, Post.slot_key, Post.kind, Post.due_at, Post.state, Post.tweet_id, Post.text,
         Post.reason, Post.attempts, Post.created_at, Post.updated_at, Post.network)),
}


def read_page(table: Table, after: Any, limit: int = PAGE_ROWS) -> list[tuple[Value, ...]]:
    """Up to `limit` rows whose key is greater than `after` (None: from the start).
    The stored text is returned as stored (instants stay ISO 8601 UTC text)."""
    key = table.fields[0]
    query = key.model.select(*table.fields).order_by(key).limit(limit)
    if after is not None:
        query = query.where(key > after)
    sql, params = query.sql()
    # Raw rows: peewee's per-field conversion would parse every timestamp
    # into a datetime only for it to be printed again.
    return [table.row(raw) for raw in database.execute_sql(sql, params).fetchall()]


def count(table: Table) -> int:
    """How many rows `table` has now."""
    return table.fields[0].model.select().count()


def pages(table: Table, read: Callable[..., list[tuple[Value, ...]]] = read_page,
          rows: int = PAGE_ROWS) -> Iterator[list[tuple[Value, ...]]]:
    """Every row of `table`, a page of `rows` rows at a time. `read(table, after,
    rows)` reads one page (e.g. through the database owner)."""
    after = None
    while True:
        page = read(table, after, rows)
        if not page:
            return
        yield page
        if len(page) < rows:
            return
        after = page[-1][0]
        del page        # not alive while the next one is read


def write_csv(table: Table, rows: Iterator[list[tuple[Value, ...]]], out: IO[str]) -> None:
    """A header line, then one line per row; booleans as true/false, NULL as empty."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.columns)
    for page in rows:
        writer.writerows(tuple(_csv_value(v) for v in row) for row in page)


def write_json(table: Table, rows: Iterator[list[tuple[Value, ...]]], out: IO[str]) -> None:
    """A JSON array of objects, one per row, written as it is read."""
    first = True
    out.write("[")
    for page in rows:
        for row in page:
            out.write("\n  " if first else ",\n  ")
            out.write(json.dumps(dict(zip(table.columns, row, strict=True)), ensure_ascii=False))
            first = False
    out.write("\n]\n" if not first else "]\n")


def _csv_value(value: Value) -> Value:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value
