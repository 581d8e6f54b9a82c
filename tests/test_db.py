"""The database owner: migrations, one writer, readers that never see "locked"."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import peewee
import pytest

from buzzbotd.db import (
    DatabaseError,
    DatabaseOwner,
    Meta,
    Post,
    PostEvent,
    SqliteOwner,
    after_commit,
    migrations,
)
from buzzbotd.db.owner import NotOwnerThread
from tests.support import REPO, write_config
from tests.support.postgres import query_elsewhere

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


def add_post(key: str, state: str = "posted") -> int:
    post = Post.create(slot_key=key, kind="scheduled", due_at=NOW, state=state, text="t",
                       created_at=NOW, updated_at=NOW)
    PostEvent.create(post=post, at=NOW, event=state)
    return post.id


def test_migration_from_older_schema_keeps_every_row(tmp_path: Path) -> None:
    path = tmp_path / "buzzbotd.db"
    old = peewee.SqliteDatabase(str(path), pragmas={"journal_mode": "wal"})
    migrations.migrate(old, migrations.MIGRATIONS[:1])         # a version-1 database
    old.execute_sql("INSERT INTO meta VALUES ('x.paused', '1')")
    for i in range(50):
        old.execute_sql("INSERT INTO post (slot_key, kind, due_at, state, text, created_at, "
                        "updated_at) VALUES (?, 'scheduled', ?, 'posted', ?, ?, ?)",
                        (f"slot-{i}", f"2026-01-01T00:{i:02d}:00Z", f"tweet {i}",
                         "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z"))
    old.close()
    owner = SqliteOwner(path)
    assert owner.start() == list(range(2, migrations.LATEST + 1))
    try:
        assert owner.call(lambda: Post.select().count()) == 50
        assert owner.call(lambda: [p.text for p in Post.select().order_by(Post.id)]) == \
            [f"tweet {i}" for i in range(50)]
        assert owner.call(lambda: Meta.get_by_id("x.paused").value) == "1"
        assert owner.call(lambda: migrations.schema_version(Meta._meta.database)) == \
            migrations.LATEST
    finally:
        owner.stop()


def test_a_failing_migration_changes_nothing(tmp_path: Path) -> None:
    db = peewee.SqliteDatabase(str(tmp_path / "x.db"))
    migrations.migrate(db)
    broken = migrations.MIGRATIONS + [("broken", ["CREATE TABLE half_done (x)",
                                                  "INSERT INTO no_such_table VALUES (1)"])]
    with pytest.raises(peewee.OperationalError):
        migrations.migrate(db, broken)
    assert migrations.schema_version(db) == migrations.LATEST
    assert "half_done" not in db.get_tables()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "buzzbotd.db"
    sqlite3.connect(path).execute("PRAGMA user_version = 99").connection.close()
    owner = SqliteOwner(path)
    with pytest.raises(DatabaseError, match="schema version 99, newer than this buzzbotd"):
        owner.start()
    owner.stop()


def test_only_the_owner_thread_touches_the_database(owner: DatabaseOwner) -> None:
    errors = []

    def outside() -> None:
        try:
            Post.select().count()
        except NotOwnerThread as e:
            errors.append(str(e))

    thread = threading.Thread(target=outside, name="intruder")
    thread.start()
    thread.join()
    assert errors and "thread intruder touched the database directly" in errors[0]
    assert owner.call(lambda: Post.select().count()) == 0


def test_transactions_roll_back_on_error(owner: DatabaseOwner) -> None:
    def half_then_fail() -> None:
        add_post("a")
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        owner.call(half_then_fail)
    assert owner.call(lambda: Post.select().count()) == 0


def test_after_commit_runs_once_the_row_is_visible_and_never_on_rollback(
        owner: DatabaseOwner) -> None:
    seen: list[int] = []

    def count_from_another_connection() -> None:
        seen.append(query_elsewhere(owner, "SELECT count(*) FROM post")[0][0])

    def write(fail: bool) -> None:
        add_post("fail" if fail else "ok")
        after_commit(count_from_another_connection)
        assert seen == [], "ran before the commit"
        if fail:
            raise ValueError("boom")

    with pytest.raises(ValueError):
        owner.call(write, True)
    assert seen == []
    owner.call(write, False)
    assert seen == [1]


def test_writers_and_status_readers_never_see_locked(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    owner = SqliteOwner(tmp_path / "state" / "buzzbotd.db")
    (tmp_path / "state").mkdir()
    owner.start()
    stop = threading.Event()
    written = [0] * 8
    errors: list[str] = []

    def writer(n: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                owner.call(add_post, f"w{n}-{i}")
                written[n] += 1
            except Exception as e:  # noqa: BLE001 - recorded and asserted below
                errors.append(repr(e))
            i += 1

    threads = [threading.Thread(target=writer, args=(n,), name=f"writer-{n}") for n in range(8)]
    for thread in threads:
        thread.start()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    reports = []
    try:
        for _ in range(100):
            result = subprocess.run([sys.executable, "-m", "buzzbotd", "status", "--json",
                                     "--config", str(config)],
                                    capture_output=True, text=True, env=env, timeout=30)
            assert result.returncode == 0, result.stderr
            assert "locked" not in result.stderr
            reports.append(json.loads(result.stdout))
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    total = owner.call(lambda: Post.select().count())
    owner.stop()
    assert errors == []
    assert all(written) and total == sum(written)
    # The readers saw the writes progress, not a frozen snapshot.
    seen = [r["x"]["last_posts"][0]["slot_key"] for r in reports if r["x"]["last_posts"]]
    assert len(set(seen)) > 10


def test_integrity_failure_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "buzzbotd.db"
    path.write_bytes(b"\x00garbage" * 512)
    owner = SqliteOwner(path)
    with pytest.raises(DatabaseError, match="cannot open the database.*restore the newest copy"):
        owner.start()
    owner.stop()


@pytest.mark.parametrize("backend", ["sqlite"])     # PostgreSQL: the operator's pg_dump
def test_backups_keep_the_last_seven(owner: DatabaseOwner) -> None:
    owner.call(add_post, "kept")
    for day in range(10):
        owner.backup(NOW + timedelta(days=day))
    backups = sorted(p.name for p in owner.backup_dir.iterdir())
    assert backups == [f"buzzbotd-2026-11-{d}.db" for d in range(25, 31)] + \
        ["buzzbotd-2026-12-01.db"]
    copy = sqlite3.connect(owner.backup_dir / backups[-1])
    assert copy.execute("SELECT slot_key FROM post").fetchall() == [("kept",)]
    assert copy.execute("PRAGMA quick_check").fetchone() == ("ok",)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_owner_answers_a_ping_while_a_large_backup_runs(owner: DatabaseOwner) -> None:
    def fill() -> None:     # ~8 MiB: many more pages than one backup step copies
        Meta._meta.database.execute_sql("CREATE TABLE filler (data BLOB)")
        for _ in range(256):
            Meta._meta.database.execute_sql("INSERT INTO filler VALUES (randomblob(32768))")

    owner.call(fill)
    release = threading.Event()
    owner.submit(release.wait, 10, transaction=False)       # holds the owner's queue
    backup = owner.submit(owner._backup, NOW, transaction=False)
    ping = owner.ping()
    seen: list[tuple[bool, bool]] = []
    partial = owner.backup_dir / "buzzbotd-2026-11-22.db.partial"
    ping.add_done_callback(lambda _: seen.append((backup.done(), partial.exists())))
    release.set()
    ping.result(10)
    backup.result(10)
    assert seen == [(False, True)], "the ping waited for the whole backup"
    copy = sqlite3.connect(owner.backup_dir / "buzzbotd-2026-11-22.db")
    assert copy.execute("SELECT count(*) FROM filler").fetchone() == (256,)


def test_the_ledger_per_network_migration_keeps_every_post_and_event(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Issue 23: a database one version behind, with posts and their events, gains
    `network` ('x' for every old row), uniqueness per (slot, network) and the
    `unknown` state; on SQLite (foreign_keys=1) its rebuild deletes no event."""
    previous = migrations.MIGRATIONS[:-1]
    if backend == "sqlite":
        path = tmp_path / "buzzbotd.db"
        old: peewee.Database = peewee.SqliteDatabase(str(path), pragmas={"foreign_keys": 1})
        mark = "?"
    else:
        from buzzbotd.db.pgdriver import connect_params, load_driver
        from buzzbotd.db.postgres import PostgresOwner

        url = request.getfixturevalue("postgres_server").create_database()
        load_driver()
        old = peewee.PostgresqlDatabase(url, prefer_psycopg3=True, **connect_params(None))
        mark = "%s"
    migrations.migrate(old, previous)
    for i in range(20):
        old.execute_sql(f"INSERT INTO post (slot_key, kind, due_at, state, text, tweet_id, "
                        f"created_at, updated_at, price) VALUES ({mark}, 'scheduled', {mark}, "
                        f"'posted', {mark}, {mark}, {mark}, {mark}, 50000.5)",
                        (f"slot-{i}", f"2026-01-01T00:{i:02d}:00Z", f"tweet {i}", f"{1000 + i}",
                         "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z"))
        for event in ("claimed", "sending", "posted"):
            old.execute_sql(f"INSERT INTO post_event (post_id, at, event, detail) "
                            f"SELECT id, {mark}, {mark}, {mark} FROM post WHERE slot_key = {mark}",
                            ("2026-01-01T00:00:00Z", event, f"{event} {i}", f"slot-{i}"))
    old.close()
    owner = (SqliteOwner(tmp_path / "buzzbotd.db") if backend == "sqlite"
             else PostgresOwner(url))
    assert owner.start() == [migrations.LATEST]
    try:
        rows = owner.call(lambda: [(p.slot_key, p.network, p.text, p.tweet_id, p.price,
                                    [e.event for e in p.events.order_by(PostEvent.id)])
                                   for p in Post.select().order_by(Post.id)])
        assert rows == [(f"slot-{i}", "x", f"tweet {i}", f"{1000 + i}", 50000.5,
                         ["claimed", "sending", "posted"]) for i in range(20)]
        assert owner.call(lambda: PostEvent.select().count()) == 60

        def another_network_and_unknown() -> None:
            post = Post.create(slot_key="slot-0", network="channel", kind="scheduled",
                               due_at=NOW, state="unknown", created_at=NOW, updated_at=NOW)
            PostEvent.create(post=post, at=NOW, event="unknown")
        owner.call(another_network_and_unknown)
        with pytest.raises(peewee.IntegrityError):        # still one row per (slot, network)
            owner.call(lambda: Post.create(slot_key="slot-0", network="x", kind="scheduled",
                                           due_at=NOW, state="claimed", created_at=NOW,
                                           updated_at=NOW))
        with pytest.raises(peewee.IntegrityError):        # and the states checked
            owner.call(lambda: Post.create(slot_key="slot-1", network="mastodon",
                                           kind="scheduled", due_at=NOW, state="lost",
                                           created_at=NOW, updated_at=NOW))
        # Deleting a post still deletes its events (the reference survived the rebuild).
        owner.call(lambda: Post.delete().where(Post.slot_key == "slot-19").execute())
        assert owner.call(lambda: PostEvent.select().count()) == 58
        if backend == "sqlite":
            indexes = owner.call(lambda: {row[0] for row in Meta._meta.database.execute_sql(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")})
            assert {"post_due_at", "post_posted", "post_event_post_id"} <= indexes
    finally:
        owner.stop()
