"""The Google Sheets sync: every `sheets.interval_s` the worksheets `users`,
`reminders` and `posts` are made to hold exactly the database's rows.

One sync:
  GET the spreadsheet's sheets, count each table's rows → one batchUpdate
  that adds the missing worksheets and sizes each grid to its table exactly
  (which also drops the rows of a longer previous table) → per worksheet,
  its rows in values.update requests (RAW: text is never read as a formula)
  of at most ~2 MB each (Google's advice; it refuses 10 MB).
The rows are read through the database owner a page (PAGE_ROWS) at a time,
encoded as they come, and each ~2 MB part is sent and dropped before the
next is read: a sync of 100,000 reminders never holds more than one part and
one page, and malloc_trim (runtime/memory.py) hands the freed pages back after it.
A row added or removed between the count and its page (the bot runs on)
grows or shrinks that grid with one more batchUpdate, so the sheet still
ends up holding exactly the rows read. The Google side (credentials,
session, retries on 429) is buzzbotd.sheets_api.
Any failure is recorded (status, STATUS=) and the next interval tries again:
the sync never raises into the scheduler and never holds up anything else.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import gspread
from gspread.urls import SPREADSHEET_VALUES_URL
from gspread.utils import quote

from buzzbotd.clock import utc_now
from buzzbotd.config import Settings
from buzzbotd.db import DatabaseOwner, meta, tables
from buzzbotd.runtime import memory
from buzzbotd.sheets import api

log = logging.getLogger("buzzbotd.sheets")
MAX_BODY_BYTES = 2_000_000
# Smaller pages than export's: each row is ~10 Python objects, and what a page
# spreads over the allocator's arenas stays in RSS when a few long-lived objects
# land among them. 1,000 rows: after the first sync of 100,000 reminders the
# daemon keeps ~5.6 MiB instead of ~8.3 (5,000), at 200 owner calls instead of 40.
PAGE_ROWS = 1000


@dataclass
class _Grid:
    """A worksheet's grid as this sync has sized it."""
    name: str
    sheet_id: int | None
    rows: int
    columns: int


class SheetsSync:
    """The timed job. Holds the gspread client (and its token) between syncs."""

    def __init__(self, settings: Settings, owner: DatabaseOwner,
                 clock: Callable[[], datetime] = utc_now,
                 on_change: Callable[[], None] = lambda: None) -> None:
        self.settings = settings.sheets
        self.owner = owner
        self.clock = clock
        self.credentials = api.credentials(settings)
        self.client, self.session, self.http = api.client(self.credentials,
                                                                 self.settings.api_base)
        self._spreadsheet: gspread.Spreadsheet | None = None
        self._failing: bool | None = None
        self.on_change = on_change          # failing ⇄ ok: STATUS= says so at once

    def stop(self) -> None:
        self.http.stopping.set()

    def run(self) -> bool:
        """One sync; True if it succeeded. Never raises: a failure is logged and recorded."""
        started = time.monotonic()
        requests_before, bytes_before = self.session.requests_made, self.session.bytes_sent
        try:
            counts = self.sync()
        except api.SyncStopped:
            log.info("sheets: sync abandoned, the daemon is stopping")
            return False
        except Exception as e:  # noqa: BLE001 - any failure is reported, the next interval retries
            self._spreadsheet = None      # reopen next time (it may have been replaced)
            message = api.describe(e, self.credentials, self.settings.spreadsheet_id)
            log.warning("sheets: sync of spreadsheet %s failed: %s",
                        self.settings.spreadsheet_id, message)
            self.owner.call(meta.record_sheets_error, message, self.clock())
            self._changed(failing=True)
            return False
        finally:
            memory.trim()       # the parts' pages, freed in this worker thread's arena
        self.owner.call(meta.record_sheets_ok, self.clock())
        self._changed(failing=False)
        log.info("sheets: synced %s to spreadsheet %s (%d requests, %d bytes, %.2f s)",
                 ", ".join(f"{name} {n}" for name, n in counts.items()),
                 self.settings.spreadsheet_id, self.session.requests_made - requests_before,
                 self.session.bytes_sent - bytes_before, time.monotonic() - started)
        return True

    def _changed(self, failing: bool) -> None:
        if failing != self._failing:
            self._failing = failing
            self.on_change()

    def sync(self) -> dict[str, int]:
        """Writes the three worksheets; returns the rows written to each (header excluded)."""
        if self._spreadsheet is None:
            self._spreadsheet = self.client.open_by_key(self.settings.spreadsheet_id)
        spreadsheet = self._spreadsheet
        counts = self.owner.call(_count_rows, transaction=False)
        grids = self._size_grids(spreadsheet, {name: n + 1 for name, n in counts.items()})
        return {name: self._write(spreadsheet, table, grids[name])
                for name, table in tables.TABLES.items()}

    def _size_grids(self, spreadsheet: gspread.Spreadsheet, rows: dict[str, int]
                    ) -> dict[str, _Grid]:
        """One batchUpdate that adds the missing worksheets and gives each grid
        `rows[name]` rows (none if every grid has its size already)."""
        existing = {ws.title: ws for ws in spreadsheet.worksheets()}
        grids, changes = {}, []
        for name, table in tables.TABLES.items():
            grid = _Grid(name, None, rows[name], len(table.columns))
            sheet = existing.get(name)
            if sheet is None:
                changes.append({"addSheet": {"properties": {
                    "title": name, "sheetType": "GRID", "gridProperties": _size(grid)}}})
            else:
                grid.sheet_id = sheet.id
                if (sheet.row_count, sheet.col_count) != (grid.rows, grid.columns):
                    changes.append(_resize(grid))
            grids[name] = grid
        if changes:
            reply = spreadsheet.batch_update({"requests": changes})
            for answer in reply.get("replies", []):
                added = answer.get("addSheet", {}).get("properties")
                if added and added.get("title") in grids:
                    grids[added["title"]].sheet_id = added["sheetId"]
        return grids

    def _write(self, spreadsheet: gspread.Spreadsheet, table: tables.Table, grid: _Grid) -> int:
        """Sends `table`'s rows part by part; returns how many rows it wrote."""
        last_row = 1
        pages = tables.pages(table, self._read, PAGE_ROWS)
        for a1, last_row, body in parts(table, pages, MAX_BODY_BYTES):
            if last_row > grid.rows:            # rows added since they were counted
                self._regrid(spreadsheet, grid, last_row)
            self.http.request("put", SPREADSHEET_VALUES_URL % (spreadsheet.id, quote(a1)),
                              params={"valueInputOption": "RAW"}, data=body,
                              headers={"Content-Type": "application/json; charset=utf-8"})
            del body                            # not alive while the next part is built
        if last_row < grid.rows:                # rows removed since they were counted
            self._regrid(spreadsheet, grid, last_row)
        return last_row - 1

    def _regrid(self, spreadsheet: gspread.Spreadsheet, grid: _Grid, rows: int) -> None:
        log.info("sheets: %s changed during the sync; its grid goes from %d to %d rows",
                 grid.name, grid.rows, rows)
        grid.rows = rows
        spreadsheet.batch_update({"requests": [_resize(grid)]})

    def _read(self, table: tables.Table, after: Any, rows: int) -> list[tuple]:
        return self.owner.call(tables.read_page, table, after, rows, transaction=False)


def parts(table: tables.Table, pages: Iterable[list[tuple[tables.Value, ...]]],
          limit: int) -> Iterator[tuple[str, int, bytes]]:
    """The values.update requests for `table`, built from its pages as they come:
    (range, the last row it fills, body) each. Row 1 is the header. A part
    closes before the page that would take it past `limit` bytes, so a part
    holds whole pages and at least one."""
    ids = [column.endswith("_id") for column in table.columns]
    encoded = [json.dumps([list(table.columns)], ensure_ascii=False)[1:-1].encode()]
    size, first_row, last_row = len(encoded[0]), 1, 1

    def close() -> tuple[str, int, bytes]:
        a1 = f"'{table.name}'!A{first_row}"
        head = json.dumps({"range": a1, "majorDimension": "ROWS"})[:-1].encode()
        return a1, last_row, b"".join([head, b',"values":[', b",".join(encoded), b"]}"])

    for page in pages:
        cells = [[_cell(v, is_id) for v, is_id in zip(row, ids, strict=True)] for row in page]
        chunk = json.dumps(cells, ensure_ascii=False)[1:-1].encode()
        n = len(page)
        del cells, page             # only the encoded rows stay while a part is sent
        if last_row > 1 and size + len(chunk) > limit:
            part = close()
            encoded, size, first_row = [], 0, last_row + 1
            yield part
            del part
        encoded.append(chunk)
        size += len(chunk)
        last_row += n
    yield close()


def _count_rows() -> dict[str, int]:
    return {name: tables.count(table) for name, table in tables.TABLES.items()}


def _size(grid: _Grid) -> dict[str, int]:
    return {"rowCount": grid.rows, "columnCount": grid.columns}


def _resize(grid: _Grid) -> dict[str, Any]:
    return {"updateSheetProperties": {
        "properties": {"sheetId": grid.sheet_id, "gridProperties": _size(grid)},
        "fields": "gridProperties.rowCount,gridProperties.columnCount"}}


def _cell(value: tables.Value, is_id: bool) -> Any:
    """A sheet cell: a JSON null would leave the cell as it was, so NULL is "";
    ids are text (a sheet shows a 13-digit chat id as 1.00E+12)."""
    if value is None:
        return ""
    return str(value) if is_id else value
