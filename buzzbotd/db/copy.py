"""`buzzbotd migrate-db --to URL`: a SQLite state copied into an empty
PostgreSQL database, for an operator moving from one Pi to two machines.

The target gets the same migrations first, then every row of every table,
in primary-key order and in batches, in one transaction: a failure leaves
the target as empty as it was. Identity columns continue after the copied
ids. The row counts of both sides are compared before the commit.
"""

from __future__ import annotations

import logging
from pathlib import Path

import peewee

from buzzbotd.config.database_url import masked
from buzzbotd.db import migrations
from buzzbotd.db.owner import DatabaseError
from buzzbotd.db.pgdriver import connect_params, load_driver

log = logging.getLogger("buzzbotd.db")
# Parents before children (foreign keys); leadership and daemon_node are per
# installation and start fresh on the target.
TABLES = ("meta", "post", "post_event", "telegram_user", "reminder", "price_alert",
          "alert_message")
IDENTITY = ("post", "post_event", "reminder", "price_alert", "alert_message")
BATCH = 2000


class TargetNotEmpty(DatabaseError):
    pass


def copy(sqlite_path: Path, url: str, password: str | None) -> dict[str, int]:
    """Copies every row; returns {table: rows}."""
    import sqlite3

    if not sqlite_path.exists():
        raise DatabaseError(f"{sqlite_path}: no SQLite database to copy")
    source = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
    try:
        version = source.execute("PRAGMA user_version").fetchone()[0]
        if version != migrations.LATEST:
            raise DatabaseError(f"{sqlite_path}: schema version {version}, this buzzbotd "
                                f"copies {migrations.LATEST}; start the daemon on it once "
                                "(it migrates) and stop it, then copy")
        load_driver()
        target = peewee.PostgresqlDatabase(url, prefer_psycopg3=True, **connect_params(password))
        try:
            target.connect()
        except peewee.OperationalError as e:
            raise DatabaseError(f"--to {masked(url)}: cannot connect: {str(e).strip()}") from None
        try:
            tables = target.get_tables()
            if tables:
                raise TargetNotEmpty(
                    f"--to {masked(url)}: the database is not empty (tables: "
                    f"{', '.join(sorted(tables)[:6])}); give an empty database "
                    "(CREATE DATABASE …), nothing was changed")
            migrations.migrate(target)
            counts = {}
            with target.atomic():
                for table in TABLES:
                    counts[table] = _copy_table(source, target, table)
                for table in IDENTITY:
                    target.execute_sql(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"COALESCE((SELECT max(id) FROM {table}), 0) + 1, false)")
                for table, rows in counts.items():
                    copied = target.execute_sql(f"SELECT count(*) FROM {table}").fetchone()[0]
                    if copied != rows:
                        raise DatabaseError(f"{table}: {rows} rows read, {copied} written; "
                                            "nothing was committed")
            return counts
        finally:
            target.close()
    finally:
        source.close()


def _copy_table(source: object, target: peewee.Database, table: str) -> int:
    cursor = source.execute(f"SELECT * FROM {table} ORDER BY rowid")  # type: ignore[attr-defined]
    columns = [d[0] for d in cursor.description]
    booleans = {i for i, c in enumerate(columns) if c in ("blocked", "enabled", "repeats")}
    insert = (f"INSERT INTO {table} ({', '.join(columns)}) "
              f"VALUES ({', '.join(['%s'] * len(columns))})")
    total = 0
    while True:
        rows = cursor.fetchmany(BATCH)
        if not rows:
            return total
        rows = [tuple(bool(v) if i in booleans and v is not None else v
                      for i, v in enumerate(row)) for row in rows]
        target.connection().cursor().executemany(insert, rows)
        total += len(rows)
