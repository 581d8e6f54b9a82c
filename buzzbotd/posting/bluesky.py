"""Bluesky over its XRPC HTTP API, with httpx (the atproto SDK costs ~66 MiB of RSS,
issue 23; this module, its session and one post: about +2 MiB over httpx's one GET).

A slot's post is the record `app.bsky.feed.post/<TID of the slot key>`
(tid.py): a repository holds one record per key, so no retry can make a second
post. An unknown outcome is settled by `com.atproto.repo.getRecord` (free, no
session needed): the record, or 400 `RecordNotFound`. A create answered 5xx
(older PDS versions answer 500 for an existing key: bluesky-social/atproto#3718,
indigo#873) or 400 `RecordAlreadyExists` (atproto PR #4728) is settled the same way.

The session (`createSession`: 30 per 5 minutes and 300 a day per account) is
made once, refreshed (`refreshSession`) when its access token is within
REFRESH_MARGIN of expiry, and after an `ExpiredToken` answer (once). It is
handed to `on_session` whenever it changes, as a `Session` the caller keeps
(to_json/from_json) and gives back after a restart; its tokens never appear in
a repr, a log line or an outcome.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from buzzbotd.clock import Clock, utc_now
from buzzbotd.config.keys import Secret
from buzzbotd.posting import tid
from buzzbotd.posting.outcome import (
    REQUEST_TIMEOUT_S,
    CredentialsRefused,
    Failed,
    NotSent,
    Outcome,
    Posted,
    Unknown,
    error_of,
    http_client,
    not_before,
    transport_outcome,
)
from buzzbotd.posting.richtext import facets, text_problem

log = logging.getLogger("buzzbotd.bluesky")
NETWORK = "bluesky"
COLLECTION = "app.bsky.feed.post"
REFRESH_MARGIN = timedelta(minutes=5)
APP_PASSWORD_KEY = "bluesky.app_password"
TEMPLATE_KEY = "bluesky.template"


@dataclass(frozen=True)
class Session:
    """A login, as the caller keeps it (in the database) across restarts."""

    did: str
    handle: str
    pds: str                                  # where the account's repository is served
    access_jwt: str = field(repr=False)
    refresh_jwt: str = field(repr=False)

    def access_expires_at(self) -> datetime | None:
        return _jwt_expiry(self.access_jwt)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Session:
        """ValueError for anything but what to_json wrote."""
        try:
            data = json.loads(text)
            return cls(**{name: str(data[name]) for name in cls.__dataclass_fields__})
        except (TypeError, KeyError, json.JSONDecodeError) as e:
            raise ValueError(f"not a stored Bluesky session: {type(e).__name__}") from None


class _Unavailable(Exception):
    """No session, or no answer: the outcome to report instead."""

    def __init__(self, outcome: NotSent | Unknown | Failed) -> None:
        super().__init__(outcome.reason)
        self.outcome = outcome


class BlueskyClient:
    network = NETWORK

    def __init__(self, service: str, handle: str, app_password: Secret,
                 session: Session | None = None,
                 on_session: Callable[[Session], None] | None = None,
                 clock: Clock = utc_now, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.service = service.rstrip("/")
        self.handle = handle
        self._password = app_password
        self._session = session
        self.on_session = on_session
        self.clock = clock
        self._http = http_client(timeout_s)
        self._lock = threading.Lock()

    @property
    def session(self) -> Session | None:
        return self._session

    def close(self) -> None:
        self._http.close()

    # -- posting -------------------------------------------------------------------

    def post(self, key: str, text: str) -> Outcome:
        problem = text_problem(text)
        if problem:
            return Failed(problem, TEMPLATE_KEY)
        rkey = tid.for_slot(key, NETWORK)
        record: dict[str, Any] = {"$type": COLLECTION, "text": text,
                                  "createdAt": _timestamp(self.clock())}
        if found := facets(text):
            record["facets"] = found
        try:
            session = self.open_session()
            answer = self._call("POST", "com.atproto.repo.createRecord", body={
                "repo": session.did, "collection": COLLECTION, "rkey": rkey, "record": record})
        except CredentialsRefused as e:
            return e.outcome()
        except _Unavailable as e:
            return e.outcome
        if answer.status_code == 200:
            return Posted(_uri(answer, session.did, rkey), self._url(rkey), "created")
        name, message = error_of(answer)
        said = f"{answer.status_code} {name} from Bluesky"
        if name == "RecordAlreadyExists" or answer.status_code >= 500:
            return self._settled_after(key, said)
        if answer.status_code == 429:
            return NotSent(said, self._reset(answer))
        if name in ("ExpiredToken", "InvalidToken"):        # even after a renewal: no record
            return NotSent(said)
        if answer.status_code in (401, 403):
            return Failed(f"{said}: {message}", APP_PASSWORD_KEY)
        return Failed(f"{said}: {message}", TEMPLATE_KEY if name == "InvalidRequest" else None)

    def settle(self, key: str, text: str, first_sent_at: datetime) -> Outcome:
        """The record key says it all: the text and the time are not needed."""
        return self.find(key)

    def find(self, key: str) -> Posted | NotSent | Unknown:
        """Slot `key`'s post, read by its record key (no session needed)."""
        rkey = tid.for_slot(key, NETWORK)
        session = self._session
        where, repo = (session.pds, session.did) if session else (self.service, self.handle)
        try:
            answer = self._http.get(f"{where}/xrpc/com.atproto.repo.getRecord", params={
                "repo": repo, "collection": COLLECTION, "rkey": rkey})
        except httpx.TransportError as e:
            return Unknown(f"cannot read record {rkey}: {transport_outcome(e, NETWORK).reason}")
        if answer.status_code == 200:
            return Posted(_uri(answer, repo, rkey), self._url(rkey), f"found record {rkey}")
        name, _ = error_of(answer)
        if answer.status_code == 400 and name == "RecordNotFound":
            return NotSent(f"no record {rkey}: the earlier attempt did not post")
        return Unknown(f"cannot read record {rkey}: {answer.status_code} {name}")

    def _settled_after(self, key: str, said: str) -> Outcome:
        found = self.find(key)
        if isinstance(found, Posted):
            return Posted(found.id, found.url, f"{found.how} after {said}")
        return type(found)(f"{said}; {found.reason}")

    # -- the session ---------------------------------------------------------------

    def open_session(self) -> Session:
        """The session, made or refreshed as needed. Raises CredentialsRefused
        (naming bluesky.app_password) when Bluesky refuses the login, _Unavailable
        (NotSent) when no session can be had now."""
        with self._lock, _before_any_post():
            session = self._session
            if session is None:
                return self._create()
            expires = session.access_expires_at()
            if expires is not None and expires - self.clock() <= REFRESH_MARGIN:
                return self._refresh(session, still_valid=expires > self.clock())
            return session

    def _renew(self, refused: Session) -> Session:
        """After the server refused the session's access token."""
        with self._lock, _before_any_post():
            if self._session is not refused and self._session is not None:
                return self._session                    # another thread renewed it meanwhile
            return self._refresh(refused, still_valid=False)

    def _create(self) -> Session:
        answer = self._send("POST", self.service, "com.atproto.server.createSession", body={
            "identifier": self.handle, "password": self._password.reveal()})
        if answer.status_code == 200:
            log.info("session created for %s", self.handle)
            return self._keep(answer.json())
        name, message = error_of(answer)
        said = f"{answer.status_code} {name} from Bluesky at login"
        if answer.status_code == 429:
            raise _Unavailable(NotSent(said, self._reset(answer)))
        if answer.status_code >= 500:
            raise _Unavailable(NotSent(said))
        raise CredentialsRefused(f"Bluesky refused the login of {self.handle} with "
                                 f"{APP_PASSWORD_KEY}: {name}: {message} (value not shown)",
                                 APP_PASSWORD_KEY)

    def _refresh(self, session: Session, still_valid: bool) -> Session:
        answer = self._send("POST", self.service, "com.atproto.server.refreshSession",
                            token=session.refresh_jwt)
        if answer.status_code == 200:
            log.info("session refreshed for %s", self.handle)
            return self._keep(answer.json())
        name, _ = error_of(answer)
        if name in ("ExpiredToken", "InvalidToken") or answer.status_code == 401:
            log.info("session of %s ended (%s): logging in again", self.handle, name)
            self._session = None
            return self._create()
        if still_valid:                      # refresh again at the next call
            log.warning("cannot refresh the session of %s yet (%s %s)", self.handle,
                        answer.status_code, name)
            return session
        said = f"{answer.status_code} {name} from Bluesky refreshing the session"
        raise _Unavailable(NotSent(said, self._reset(answer)))

    def _keep(self, data: dict[str, Any]) -> Session:
        self._session = Session(did=data["did"], handle=data["handle"],
                                pds=_pds_of(data.get("didDoc")) or self.service,
                                access_jwt=data["accessJwt"], refresh_jwt=data["refreshJwt"])
        if self.on_session is not None:
            self.on_session(self._session)
        return self._session

    # -- requests --------------------------------------------------------------------

    def _call(self, method: str, nsid: str, body: dict[str, Any]) -> httpx.Response:
        """A call with the access token; an ExpiredToken or InvalidToken answer (a
        refusal before any work) renews the session once and repeats the call."""
        session = self.open_session()
        answer = self._send(method, session.pds, nsid, token=session.access_jwt, body=body)
        name = error_of(answer)[0] if answer.status_code in (400, 401) else ""
        if name in ("ExpiredToken", "InvalidToken") or answer.status_code == 401:
            log.info("access token of %s refused (%s): renewing the session", self.handle, name)
            session = self._renew(session)
            answer = self._send(method, session.pds, nsid, token=session.access_jwt, body=body)
        return answer

    def _send(self, method: str, base: str, nsid: str, token: str | None = None,
              body: dict[str, Any] | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            return self._http.request(method, f"{base}/xrpc/{nsid}", json=body, headers=headers)
        except httpx.TransportError as e:
            raise _Unavailable(transport_outcome(e, NETWORK)) from None

    def _reset(self, answer: httpx.Response) -> datetime | None:
        """A 429's `ratelimit-reset` (epoch seconds), or a proxy's Retry-After."""
        now = self.clock()
        reset = answer.headers.get("ratelimit-reset", "")
        if reset.isdigit():
            return not_before(int(reset) - now.timestamp(), now)
        return not_before(answer.headers.get("retry-after"), now)

    def _url(self, rkey: str) -> str:
        handle = self._session.handle if self._session else self.handle
        return f"https://bsky.app/profile/{handle}/post/{rkey}"


# -- small parts ---------------------------------------------------------------------


def _timestamp(now: datetime) -> str:
    return now.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@contextlib.contextmanager
def _before_any_post() -> Iterator[None]:
    """Getting a session: whatever fails, no post was made (a retry is safe)."""
    try:
        yield
    except _Unavailable as e:
        if isinstance(e.outcome, Unknown):
            raise _Unavailable(NotSent(f"no session: {e.outcome.reason}")) from None
        raise


def _uri(answer: httpx.Response, repo: str, rkey: str) -> str:
    """The at:// URI a PDS answered, or the one it names."""
    try:
        uri = answer.json()["uri"]
    except (ValueError, KeyError, TypeError):
        uri = None
    return uri if isinstance(uri, str) else f"at://{repo}/{COLLECTION}/{rkey}"


def _jwt_expiry(token: str) -> datetime | None:
    """A JWT's `exp`, read without checking its signature (the server does that);
    None if it has none."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return datetime.fromtimestamp(int(claims["exp"]), UTC)
    except (IndexError, ValueError, KeyError, TypeError, OverflowError):
        return None


def _pds_of(did_doc: Any) -> str | None:
    """The account's PDS from the DID document a session comes with."""
    if not isinstance(did_doc, dict):
        return None
    for service in did_doc.get("service") or []:
        if (isinstance(service, dict) and str(service.get("id", "")).endswith("#atproto_pds")
                and isinstance(service.get("serviceEndpoint"), str)):
            return service["serviceEndpoint"].rstrip("/")
    return None
