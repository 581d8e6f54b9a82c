"""The database a daemon under test uses, on either backend: SQLite at
state_dir/buzzbotd.db (the default), or a database of its own on the test
PostgreSQL server (tests/support/postgres.py). A test that takes the `daemon_db`
fixture (conftest.py) runs once on each; it writes the daemon's config with
`daemon_db.url` and reads and seeds the state through this object, as
another process would (`buzzbotd status`, an operator's shell).

SQL is written once, with `?` placeholders and SQL's true/false, which both
backends read; no pytest here (the benchmarks use it too).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import read_sqlite


@dataclass(frozen=True)
class DaemonDatabase:
    backend: str                 # "sqlite" | "postgresql"
    path: Path                   # the SQLite file (with SQLite: the database itself)
    url: str = ""                # [database] url: "" for SQLite

    @classmethod
    def sqlite(cls, path: Path) -> DaemonDatabase:
        return cls("sqlite", path)

    def create(self) -> None:
        """The schema, as the daemon makes it on its first start."""
        from buzzbotd.db import SqliteOwner

        if self.url:
            from buzzbotd.db.postgres import PostgresOwner
            owner: Any = PostgresOwner(self.url)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            owner = SqliteOwner(self.path)
        owner.start()
        owner.stop()

    def rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        """`sql`'s rows, read on a connection of this call's own."""
        if not self.url:
            return read_sqlite(self.path, sql, params)
        with self._connect() as conn:
            return conn.execute(_pg(sql), params).fetchall()

    def dicts(self, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
        """`sql`'s rows as {column: value}."""
        if not self.url:
            import sqlite3

            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            db.row_factory = sqlite3.Row
            try:
                return [dict(row) for row in db.execute(sql, params)]
            finally:
                db.close()
        with self._connect() as conn:
            cursor = conn.execute(_pg(sql), params)
            names = [column.name for column in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def execute(self, sql: str, params: tuple = ()) -> None:
        """Runs `sql` and commits."""
        self.executemany(sql, [params])

    def executemany(self, sql: str, seq: Iterable[tuple]) -> None:
        """Runs `sql` once for each parameter tuple, in one transaction."""
        if not self.url:
            import sqlite3

            db = sqlite3.connect(self.path)
            try:
                with db:
                    db.executemany(sql, seq)
            finally:
                db.close()
            return
        with self._connect() as conn, conn.transaction(), conn.cursor() as cursor:
            cursor.executemany(_pg(sql), list(seq))

    def _connect(self) -> Any:
        from buzzbotd.db.pgdriver import load_driver

        return load_driver().connect(self.url, autocommit=True)


def _pg(sql: str) -> str:
    """psycopg's placeholders for SQLite's (no test's SQL holds a literal `?`)."""
    return sql.replace("?", "%s")


def as_database(database: Path | DaemonDatabase) -> DaemonDatabase:
    """A SQLite file given by its path, or the database itself."""
    return database if isinstance(database, DaemonDatabase) else DaemonDatabase.sqlite(database)


def on_backend(backend: str, directory: Path, request: pytest.FixtureRequest) -> DaemonDatabase:
    """The database of a daemon whose config is written in `directory`, on `backend`:
    SQLite at directory/state/buzzbotd.db (url ""), or a fresh database on the test
    server (the session's postgres_server fixture)."""
    path = directory / "state" / "buzzbotd.db"
    if backend == "sqlite":
        return DaemonDatabase.sqlite(path)
    return DaemonDatabase(backend, path,
                          request.getfixturevalue("postgres_server").create_database())
