"""The Google side of the Sheets sync: the service account's credentials, the
HTTP session gspread talks through, Google's retry policy, and a failure
described in one line.

gspread drives the Sheets API v4 and google-auth signs the service account's
JWT (RS256, with the pure-Python `rsa` package: no compiled code) for the
token endpoint the key names (`token_uri`). Imported only when
sheets.enabled: these libraries cost ~10 MiB and ~0.2 s to import.

A 429 (Google's per-minute quota), 408 or 5xx is retried after an
exponential backoff with jitter, at most MAX_ATTEMPTS times, and the wait
ends at once when the daemon stops.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from typing import Any

import gspread
import requests
from google.auth import exceptions as auth_exceptions
from google.auth.transport.requests import AuthorizedSession, Request
from google.oauth2 import service_account

from buzzbotd import retry
from buzzbotd.config import ConfigError, Settings
from buzzbotd.runtime.text import shorten

log = logging.getLogger("buzzbotd.sheets")
SCOPES = ("https://www.googleapis.com/auth/spreadsheets",)
GSPREAD_HOST = "https://sheets.googleapis.com"   # hard-coded in gspread.urls
REQUEST_TIMEOUT_S = (10.0, 120.0)                # connect, read (a big write takes a while)
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MAX_ATTEMPTS = 6
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 64.0        # Google's advice for its APIs: min(2^n + jitter, 64 s)
ERROR_CHARS = 300


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


class RebasedSession(AuthorizedSession):
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


class QuotaClient(gspread.HTTPClient):
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
        """The one retry policy (buzzbotd.retry): never a tight loop, and daemons
        that hit the quota together do not retry together."""
        return retry.wait_s(attempt, self.backoff_first_s, BACKOFF_MAX_S,
                            retry.retry_after_s(retry_after), self.random)


def client(creds: service_account.Credentials, api_base: str
           ) -> tuple[gspread.Client, RebasedSession, QuotaClient]:
    """A gspread client that talks to `api_base` through a counting session
    and retries as Google asks; the session and the retrying client with it."""
    session = RebasedSession(creds, api_base)
    gc = gspread.Client(creds, session=session, http_client=QuotaClient)
    return gc, session, gc.http_client  # type: ignore[return-value]


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
    return shorten(" ".join(text.split()), ERROR_CHARS)


def _first_arg(error: BaseException) -> str:
    return str(error.args[0]) if error.args else type(error).__name__
