"""Plain SQL for the few reads that run all the time (the status line twice a
minute, every scrape): peewee's building of a query costs ~0.4 ms of Python,
more than SQLite's running it. Only portable SQL, with `?` placeholders."""

from __future__ import annotations

from typing import Any

from buzzbotd.db.models import database


def rows(sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """The rows of `sql` on the bound database (inside the owner, or read-only)."""
    return _run(sql, params).fetchall()


def execute(sql: str, *params: Any) -> int:
    """A statement that returns no rows (inside the owner's transaction); the number
    of rows it changed."""
    return _run(sql, params).rowcount


def _run(sql: str, params: tuple[Any, ...]) -> Any:
    db = database.obj
    if db.param != "?":
        sql = sql.replace("?", db.param)
    return db.execute_sql(sql, params)
