"""The Google Sheets sync: every `sheets.interval_s` the worksheets `users`,
`reminders` and `posts` are made to hold exactly the database's rows.

One sync:
  GET the spreadsheet's sheets → one batchUpdate that adds the missing
  worksheets and sizes each grid to its table exactly (which also drops the
  rows of a longer previous table) → one values.update per worksheet with
  all of its rows (RAW: text is never read as a formula); a table of more
  than ~2 MB (Google's advice; it refuses 10 MB) is written in ~2 MB parts.
The Google side (credentials, session, retries on 429) is
buzzbotd.sheets_api. The rows are read through the database
owner a page at a time and encoded to the request body as they come, so a
sync of 100,000 reminders never holds them as Python objects all at once.
Any failure is recorded (status, STATUS=) and the next interval tries again:
the sync never raises into the scheduler and never holds up anything else.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import gspread
from gspread.urls import SPREADSHEET_VALUES_URL
from gspread.utils import quote

from buzzbotd import heap, sheets_api, state, tables
from buzzbotd.config import Settings
from buzzbotd.db import DatabaseOwner
from buzzbotd.scheduler import utc_now

log = logging.getLogger("buzzbotd.sheets")
MAX_BODY_BYTES = 2_000_000


class SheetsSync:
    """The timed job. Holds the gspread client (and its token) between syncs."""

    def __init__(self, settings: Settings, owner: DatabaseOwner,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.settings = settings.sheets
        self.owner = owner
        self.clock = clock
        self.credentials = sheets_api.credentials(settings)
        self.client, self.session, self.http = sheets_api.client(self.credentials,
                                                                 self.settings.api_base)
        self._spreadsheet: gspread.Spreadsheet | None = None
        self._failing: bool | None = None
        self.on_change: Callable[[], None] = lambda: None   # failing ⇄ ok (STATUS=)

    def stop(self) -> None:
        self.http.stopping.set()

    def run(self) -> bool:
        """One sync; True if it succeeded. Never raises: a failure is logged and recorded."""
        started = time.monotonic()
        requests_before, bytes_before = self.session.requests_made, self.session.bytes_sent
        try:
            counts = self.sync()
        except sheets_api.SyncStopped:
            log.info("sheets: sync abandoned, the daemon is stopping")
            return False
        except Exception as e:  # noqa: BLE001 - any failure is reported, the next interval retries
            self._spreadsheet = None      # reopen next time (it may have been replaced)
            message = sheets_api.describe(e, self.credentials, self.settings.spreadsheet_id)
            log.warning("sheets: sync of spreadsheet %s failed: %s",
                        self.settings.spreadsheet_id, message)
            self.owner.call(state.record_sheets_error, message, self.clock())
            self._changed(failing=True)
            return False
        finally:
            heap.trim()       # the request bodies, freed in this worker thread's arena
        self.owner.call(state.record_sheets_ok, self.clock())
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
        existing = {ws.title: ws for ws in spreadsheet.worksheets()}
        bodies = {name: self._body(table) for name, table in tables.TABLES.items()}
        grid = []
        for name, (_, rows) in bodies.items():
            width = len(tables.TABLES[name].columns)
            sheet = existing.get(name)
            size = {"rowCount": rows + 1, "columnCount": width}
            if sheet is None:
                grid.append({"addSheet": {"properties": {
                    "title": name, "sheetType": "GRID", "gridProperties": size}}})
            elif (sheet.row_count, sheet.col_count) != (rows + 1, width):
                grid.append({"updateSheetProperties": {
                    "properties": {"sheetId": sheet.id, "gridProperties": size},
                    "fields": "gridProperties.rowCount,gridProperties.columnCount"}})
        if grid:
            spreadsheet.batch_update({"requests": grid})
        counts = {}
        for name in list(bodies):
            requests_, rows = bodies.pop(name)     # each body is freed once it is sent
            while requests_:
                a1, body = requests_.pop(0)
                self.http.request("put", SPREADSHEET_VALUES_URL % (spreadsheet.id, quote(a1)),
                                  params={"valueInputOption": "RAW"}, data=body,
                                  headers={"Content-Type": "application/json; charset=utf-8"})
            counts[name] = rows
        return counts

    def _body(self, table: tables.Table) -> tuple[list[tuple[str, bytes]], int]:
        """The values.update requests for `table` (its range and body each) and its
        number of rows. One request per sheet, unless its rows exceed MAX_BODY_BYTES:
        Google rejects a request over 10 MB and advises 2 MB."""
        requests_: list[tuple[str, bytes]] = []
        encoded = [json.dumps([list(table.columns)], ensure_ascii=False)[1:-1].encode()]
        size, first_row, rows = len(encoded[0]), 1, 0
        ids = [column.endswith("_id") for column in table.columns]

        def close() -> None:
            a1 = f"'{table.name}'!A{first_row}"
            head = json.dumps({"range": a1, "majorDimension": "ROWS"})[:-1].encode()
            requests_.append((a1, b"".join([head, b',"values":[', b",".join(encoded), b"]}"])))

        for page in tables.pages(table, self._read):
            cells = [[_cell(v, is_id) for v, is_id in zip(row, ids, strict=True)]
                     for row in page]
            chunk = json.dumps(cells, ensure_ascii=False)[1:-1].encode()
            if rows and size + len(chunk) > MAX_BODY_BYTES:
                close()
                encoded, size, first_row = [], 0, rows + 2      # +1: the header, +1: 1-based
            encoded.append(chunk)
            size += len(chunk)
            rows += len(page)
        close()
        return requests_, rows

    def _read(self, table: tables.Table, after: Any) -> list[tuple]:
        return self.owner.call(tables.read_page, table, after, transaction=False)


def _cell(value: tables.Value, is_id: bool) -> Any:
    """A sheet cell: a JSON null would leave the cell as it was, so NULL is "";
    ids are text (a sheet shows a 13-digit chat id as 1.00E+12)."""
    if value is None:
        return ""
    return str(value) if is_id else value
