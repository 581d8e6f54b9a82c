"""`buzzbotd export`: the tables on stdout, read back with the csv and json
modules, equal the database; read-only, while the daemon's owner writes."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from buzzbotd.db import SqliteOwner
from tests.support import REPO, write_config
from tests.support.sheets_world import BOOLEAN_COLUMNS, database_rows
from tests.support.telegram_world import seed_reminders
from tests.test_sheets import fill

TABLES = ("users", "reminders", "posts")


def export(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "buzzbotd", "export", *args,
                           "--config", str(config)], capture_output=True, text=True,
                          cwd=REPO, timeout=60)


@pytest.fixture
def database(tmp_path: Path):
    config = write_config(tmp_path)
    path = tmp_path / "state" / "buzzbotd.db"
    path.parent.mkdir()
    owner = SqliteOwner(path)
    owner.start()
    owner.call(fill)
    yield config, path, owner       # the owner stays open, as in a running daemon
    owner.stop()


def exported(database, table: str, form: str) -> tuple[str, list[str], list[dict]]:
    """`export table --format form`'s output (it must succeed), and the table's
    columns and rows as the database holds them."""
    config, path, _ = database
    out = export(config, table, "--format", form)
    assert out.returncode == 0, out.stderr
    return (out.stdout, *database_rows(path, table))


@pytest.mark.parametrize("table", TABLES)
def test_csv_parsed_back_equals_the_database(database, table: str) -> None:
    stdout, columns, rows = exported(database, table, "csv")
    parsed = list(csv.reader(io.StringIO(stdout)))
    assert parsed[0] == columns
    expected = [[_csv(column, value) for column, value in row.items()] for row in rows]
    assert parsed[1:] == expected and len(expected) > 1


@pytest.mark.parametrize("table", TABLES)
def test_json_parsed_back_equals_the_database(database, table: str) -> None:
    stdout, _, rows = exported(database, table, "json")
    expected = [{k: bool(v) if k in BOOLEAN_COLUMNS else v for k, v in row.items()}
                for row in rows]
    assert json.loads(stdout) == expected


def test_csv_is_the_default_and_an_empty_table_is_a_header(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    path = tmp_path / "state" / "buzzbotd.db"
    path.parent.mkdir()
    owner = SqliteOwner(path)
    owner.start()
    owner.stop()
    out = export(config, "users")
    assert out.returncode == 0 and out.stdout == (
        "user_id,chat_id,timezone,blocked,created_at,updated_at\n")
    assert json.loads(export(config, "posts", "--format", "json").stdout) == []


def test_export_of_many_rows_pages_through_all_of_them(database) -> None:
    """More rows than one page (5000): every one exactly once, in order."""
    config, path, owner = database
    owner.stop()
    seed_reminders(path, 12_345, first_due=datetime(2026, 11, 22, 8, tzinfo=UTC))
    out = export(config, "reminders")
    ids = [int(row[0]) for row in list(csv.reader(io.StringIO(out.stdout)))[1:]]
    assert ids == [row["reminder_id"] for row in database_rows(path, "reminders")[1]]
    assert len(ids) == 12_345 + 3


def test_bad_table_or_format_is_a_clear_error(database) -> None:
    config, _, _ = database
    for args in (("tweets",), ("users", "--format", "xml")):
        out = export(config, *args)
        assert out.returncode == 1 and "Traceback" not in out.stderr
        assert "invalid choice" in out.stderr


def test_no_database_yet(tmp_path: Path) -> None:
    out = export(write_config(tmp_path), "users")
    assert out.returncode == 1 and "no database yet" in out.stderr


def _csv(column: str, value: object) -> str:
    if value is None:
        return ""
    if column in BOOLEAN_COLUMNS:
        return "true" if value else "false"
    return str(value)
