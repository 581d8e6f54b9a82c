"""The Google Sheets sync: every `sheets.interval_s` the worksheets `users`,
`reminders` and `posts` are made to hold exactly the database's rows.

gspread drives the Sheets API v4 and google-auth signs the service account's
JWT (RS256, with the pure-Python `rsa` package: no compiled code) for the
token endpoint the key names (`token_uri`). Imported only when
sheets.enabled: these libraries cost ~10 MiB and ~0.2 s to import.

One sync:
  GET the spreadsheet's sheets → one batchUpdate that adds the missing
  worksheets and sizes each grid to its table exactly (which also drops the
  rows of a longer previous table) → one values.update per worksheet with
  all of its rows (RAW: text is never read as a formula); a table of more
  than ~2 MB (Google's advice; it refuses 10 MB) is written in ~2 MB parts.
A 429 (Google's per-minute quota), 408 or 5xx is retried after an
exponential backoff with jitter, at most MAX_ATTEMPTS times, and the wait
ends at once when the daemon stops. The rows are read through the database
owner a page at a time and encoded to the request body as they come, so a
sync of 100,000 reminders never holds them as Python objects all at once.
Any failure is recorded (status, STATUS=) and the next interval tries again:
the sync never raises into the scheduler and never holds up anything else.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import gspread
import requests
from google.auth import exceptions as auth_exceptions
from google.auth.transport.requests import AuthorizedSession, Request
from google.oauth2 import service_account
from gspread.urls import SPREADSHEET_VALUES_URL
from gspread.utils import quote

from buzzbotd import backoff, durable, tables
from buzzbotd.config import ConfigError, Settings
from buzzbotd.db import DatabaseOwner
from buzzbotd.scheduler import utc_now

log = logging.getLogger("buzzbotd.sheets")
SCOPES = ("https://www.googleapis.com/auth/spreadsheets",)
GSPREAD_HOST = "https://sheets.googleapis.com"   # hard-coded in gspread.urls
REQUEST_TIMEOUT_S = (10.0, 120.0)                # connect, read (a big write takes a while)
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MAX_ATTEMPTS = 6
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 64.0        # Google's advice for its APIs: min(2^n + jitter, 64 s)
ERROR_CHARS = 300
MAX_BODY_BYTES = 2_000_000


class SyncStopped(Exception):
    """The daemon is stopping; the sync gave up waiting."""


class _TimeoutSession(requests.Session):
    """A session whose requests time out (google-auth's token request would
    wait 120 s, gspread's forever)."""

    def __init__(self, timeout: float | tuple[float, float]) -> None:
        super().__init__()
        self.timeout = timeout

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().request(method, url, *args, **kwargs)


class _RebasedSession(AuthorizedSession):
    """google-auth's session (bearer token, refreshed when it expires or a 401
    comes back) that sends gspread's requests to `sheets.api_base` instead of
    the host gspread hard-codes, and counts what it sent."""

    def __init__(self, credentials: Any, api_base: str) -> None:
        super().__init__(credentials, auth_request=Request(_TimeoutSession(REQUEST_TIMEOUT_S)))
        self.api_base = api_base.rstrip("/")
        self.requests_made = 0
        self.bytes_sent = 0

    def request(self, method: str, url: str, data: Any = None, headers: Any = None,
                **kwargs: Any) -> requests.Response:
        if url.startswith(GSPREAD_HOST):
            url = self.api_base + url[len(GSPREAD_HOST):]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = REQUEST_TIMEOUT_S
        response = super().request(method, url, data=data, headers=headers, **kwargs)
        self.requests_made += 1
        self.bytes_sent += len(response.request.body or b"")
        return response


class _QuotaClient(gspread.HTTPClient):
    """gspread's HTTP client with Google's retry policy: 429/408/5xx wait
    an exponential backoff with jitter (or Retry-After, if longer), then retry."""

    def __init__(self, auth: Any, session: requests.Session | None = None) -> None:
        super().__init__(auth, session)
        self.stopping = threading.Event()
        self.backoff_first_s = BACKOFF_FIRST_S
        self.random = random.Random()

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return super().request(*args, **kwargs)
            except gspread.exceptions.APIError as e:
                status = e.response.status_code
                if status not in RETRY_STATUSES or attempt == MAX_ATTEMPTS:
                    raise
                wait = self.backoff(attempt, e.response.headers.get("Retry-After"))
                sent = e.response.request
                log.warning("sheets: HTTP %d from %s %s, attempt %d of %d; retrying in %.1f s",
                            status, sent.method, sent.path_url.split("?")[0], attempt,
                            MAX_ATTEMPTS, wait)
                if self.stopping.wait(wait):
                    raise SyncStopped() from None
        raise AssertionError("unreachable")

    def backoff(self, attempt: int, retry_after: str | None = None) -> float:
        """Half the exponential step fixed, half random ("equal jitter"): never
        a tight loop, and daemons that hit the quota together do not retry together."""
        wait = backoff.equal_jitter(backoff.step(attempt, self.backoff_first_s, BACKOFF_MAX_S),
                                    self.random)
        if retry_after and retry_after.isdigit():
            wait = max(wait, min(float(retry_after), BACKOFF_MAX_S))
        return wait


class SheetsSync:
    """The timed job. Holds the gspread client (and its token) between syncs."""

    def __init__(self, settings: Settings, owner: DatabaseOwner,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.settings = settings.sheets
        self.owner = owner
        self.clock = clock
        self.credentials = credentials(settings)
        self.session = _RebasedSession(self.credentials, self.settings.api_base)
        self.client = gspread.Client(self.credentials, session=self.session,
                                     http_client=_QuotaClient)
        self.http: _QuotaClient = self.client.http_client  # type: ignore[assignment]
        self._spreadsheet: gspread.Spreadsheet | None = None
        self._trim = _malloc_trim()
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
        except SyncStopped:
            log.info("sheets: sync abandoned, the daemon is stopping")
            return False
        except Exception as e:  # noqa: BLE001 - any failure is reported, the next interval retries
            self._spreadsheet = None      # reopen next time (it may have been replaced)
            message = describe(e, self.credentials, self.settings.spreadsheet_id)
            log.warning("sheets: sync of spreadsheet %s failed: %s",
                        self.settings.spreadsheet_id, message)
            self.owner.call(durable.record_sheets_error, message, self.clock())
            self._changed(failing=True)
            return False
        finally:
            self._trim()
        self.owner.call(durable.record_sheets_ok, self.clock())
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


def credentials(settings: Settings) -> service_account.Credentials:
    """The service account's credentials, with the key's own token_uri.
    A key google-auth cannot use is a configuration error that shows
    neither the key nor the parser's message (which may quote it)."""
    sheets = settings.sheets
    info = json.loads(sheets.service_account.reveal())
    try:
        return service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
    except Exception:  # noqa: BLE001 - pyasn1/rsa raise many kinds; none may be shown
        raise ConfigError([f"{settings.path}: sheets.service_account_file: "
                           f"{sheets.service_account.source}: private_key is not an RSA private "
                           "key google-auth can read (value not shown); expected the key "
                           "file Google gave you, unchanged"]) from None


def describe(error: BaseException, creds: Any = None, spreadsheet_id: str = "") -> str:
    """One line for the journal and status: what failed, where, and what came back."""
    email = getattr(creds, "service_account_email", "the service account")
    if isinstance(error, gspread.exceptions.SpreadsheetNotFound):
        text = (f"spreadsheet {spreadsheet_id} not found (404); check sheets.spreadsheet_id "
                f"and share the spreadsheet with {email}")
    elif isinstance(error, PermissionError):      # gspread's answer to a 403 on open
        text = (f"no access to spreadsheet {spreadsheet_id} (403); share it with {email} "
                "as an editor")
    elif isinstance(error, gspread.exceptions.APIError):
        text = f"Sheets API answered {error.response.status_code}: {error.error.get('message')}"
    elif isinstance(error, auth_exceptions.RefreshError | auth_exceptions.TransportError):
        uri = getattr(creds, "_token_uri", "the token endpoint")
        text = f"cannot get an access token from {uri}: {_first_arg(error)}"
    elif isinstance(error, requests.RequestException):
        text = f"cannot reach the Sheets API: {type(error).__name__}: {error}"
    else:
        text = f"{type(error).__name__}: {error}"
    text = " ".join(text.split())
    return text if len(text) <= ERROR_CHARS else text[:ERROR_CHARS - 3] + "..."


def _first_arg(error: BaseException) -> str:
    return str(error.args[0]) if error.args else type(error).__name__


def _cell(value: tables.Value, is_id: bool) -> Any:
    """A sheet cell: a JSON null would leave the cell as it was, so NULL is "";
    ids are text (a sheet shows a 13-digit chat id as 1.00E+12)."""
    if value is None:
        return ""
    return str(value) if is_id else value


def _malloc_trim() -> Callable[[], None]:
    """glibc keeps the pages of freed large buffers (the request bodies) in the
    worker thread's arena; malloc_trim hands them back, so RSS returns to where
    it was before the sync. A no-op elsewhere."""
    name = ctypes.util.find_library("c")
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    if trim is None:
        return lambda: None
    return lambda: trim(0)
