"""A stand-in for a Bluesky PDS (AT Protocol XRPC), as much of it as buzzbotd uses.

  POST /xrpc/com.atproto.server.createSession   a session for HANDLE and APP_PASSWORD
  POST /xrpc/com.atproto.server.refreshSession  a new token pair for the refresh token
  POST /xrpc/com.atproto.repo.createRecord      stores a post under its record key
  GET  /xrpc/com.atproto.repo.getRecord         a record, or 400 RecordNotFound

Answers are the PDS's own (bluesky-social/atproto, packages/pds and
packages/xrpc-server; cited beside each body). Tokens are JWT-shaped with an
`exp` read against the fake's `clock` (epoch seconds, injectable): a test
moves it to expire them. `existing_key` says what a create for a key that
exists answers: "500" as released PDS versions do (atproto#3718, indigo#873),
or "named" as atproto PR #4728 does. Faults come from FakeAPI (503, 429 with
its headers, hangs, dropped connections, each optionally after the record was
stored).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.fakes.base import FakeAPI, Fault, Request, Response

HANDLE = "buzz.test"
DID = "did:plc:buzzbotdtestaccount0000"
APP_PASSWORD = "abcd-efgh-ijkl-mnop"
COLLECTION = "app.bsky.feed.post"
CREATE_SESSION = "POST /xrpc/com.atproto.server.createSession"
REFRESH_SESSION = "POST /xrpc/com.atproto.server.refreshSession"
CREATE_RECORD = "POST /xrpc/com.atproto.repo.createRecord"
GET_RECORD = "GET /xrpc/com.atproto.repo.getRecord"
ACCESS_TTL_S = 120 * 60            # packages/pds/src/account-manager/helpers/auth.ts: '120mins'
REFRESH_TTL_S = 90 * 24 * 3600     # and '90days'
# createSession's limits (packages/pds/src/api/com/atproto/server/createSession.ts)
SESSION_LIMITS = ((30, 5 * 60), (300, 24 * 3600))

# XRPC errors are {"error": name, "message": text} (packages/xrpc-server/src/errors.ts).
# AuthRequiredError('Invalid identifier or password'), no custom name: 401
# AuthenticationRequired (packages/pds/src/account-manager/account-manager.ts).
BAD_LOGIN = {"error": "AuthenticationRequired", "message": "Invalid identifier or password"}
# packages/pds/src/auth-verifier.ts: jose.errors.JWTExpired → InvalidRequestError
# ('Token has expired', 'ExpiredToken'), a 400; anything else 'InvalidToken'.
EXPIRED = {"error": "ExpiredToken", "message": "Token has expired"}
INVALID = {"error": "InvalidToken", "message": "Token could not be verified"}
# No Authorization header: AuthRequiredError(undefined, 'AuthMissing').
MISSING = {"error": "AuthMissing", "message": "Authentication Required"}
# refreshSession for a rotated (revoked) token (api/com/atproto/server/refreshSession.ts).
REVOKED = {"error": "ExpiredToken", "message": "Token has been revoked"}
# The 500 of atproto#3718, verbatim.
INTERNAL = {"error": "InternalServerError", "message": "Internal Server Error"}
# RateLimitExceededError; the message is ResponseTypeStrings' (packages/xrpc/src/types.ts).
RATE_LIMITED = {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"}


@dataclass
class Record:
    rkey: str
    value: dict[str, Any]
    cid: str


class FakeBluesky(FakeAPI):
    name = "bluesky"

    def __init__(self, existing_key: str = "500") -> None:
        super().__init__()
        assert existing_key in ("500", "named")
        self.existing_key = existing_key
        self.records: dict[str, Record] = {}
        self.clock: Callable[[], float] = time.time
        self.access_ttl_s = ACCESS_TTL_S
        self.refresh_ttl_s = REFRESH_TTL_S
        self.sessions_created = 0
        self.sessions_refreshed = 0
        self._tokens: dict[str, tuple[str, float]] = {}     # token → (kind, exp)
        self._logins: list[float] = []
        self._serial = itertools.count(1)
        self._store = threading.Lock()

    def posts(self) -> list[Record]:
        with self._store:
            return list(self.records.values())

    def did_doc(self) -> dict[str, Any]:
        """The DID document a session comes with: the account's PDS is this fake."""
        return {"@context": ["https://www.w3.org/ns/did/v1"], "id": DID,
                "alsoKnownAs": [f"at://{HANDLE}"],
                "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                             "serviceEndpoint": self.url}]}

    def rate_limited(self, reset_at: float, limit: int = 30, window_s: int = 300,
                     **kw: Any) -> Fault:
        """A 429 with the headers the PDS sets (xrpc-server/src/rate-limiter-http.ts)."""
        return Fault.status_code(429, RATE_LIMITED,
                                 _limit_headers(limit, 0, int(reset_at), window_s), **kw)

    def expire_tokens(self, which: str = "access") -> None:
        """Every `which` token issued so far expires now (as if hours had passed)."""
        with self._store:
            now = self.clock()
            self._tokens = {t: (kind, min(exp, now - 1) if kind == which else exp)
                            for t, (kind, exp) in self._tokens.items()}

    # -- answering ---------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        route = self.route(request)
        if route == CREATE_SESSION:
            return self._create_session(request)
        if route == REFRESH_SESSION:
            refused = self._refused(request, "refresh")
            return refused or self._refresh(request)
        if route == GET_RECORD:
            return self._get_record(request)
        if route == CREATE_RECORD:
            return self._refused(request, "access") or self._create_record(request)
        # xrpc-server's answer for a method it does not implement
        return Response(501, {"error": "MethodNotImplemented",
                              "message": "Method Not Implemented"})

    def _create_session(self, request: Request) -> Response:
        body = request.json() or {}
        now = self.clock()
        with self._store:
            self._logins = [t for t in self._logins if t > now - SESSION_LIMITS[-1][1]]
            for limit, window in SESSION_LIMITS:
                used = [t for t in self._logins if t > now - window]
                if len(used) >= limit:
                    reset = int(used[0] + window)
                    return Response(429, RATE_LIMITED, _limit_headers(limit, 0, reset, window))
            self._logins.append(now)
            left = SESSION_LIMITS[0][0] - sum(1 for t in self._logins
                                              if t > now - SESSION_LIMITS[0][1])
        headers = _limit_headers(SESSION_LIMITS[0][0], left, int(now) + SESSION_LIMITS[0][1],
                                 SESSION_LIMITS[0][1])
        if body.get("identifier") not in (HANDLE, DID) or body.get("password") != APP_PASSWORD:
            return Response(401, BAD_LOGIN, headers)
        self.sessions_created += 1
        return Response(200, self._session_body(), headers)

    def _refresh(self, request: Request) -> Response:
        token = _bearer(request)
        with self._store:
            self._tokens.pop(token, None)            # rotated: the old one is revoked
        self.sessions_refreshed += 1
        return Response(200, self._session_body())

    def _session_body(self) -> dict[str, Any]:
        # com.atproto.server.createSession's output (lexicons/com/atproto/server/createSession.json)
        return {"did": DID, "handle": HANDLE, "didDoc": self.did_doc(),
                "accessJwt": self._token("access", self.access_ttl_s),
                "refreshJwt": self._token("refresh", self.refresh_ttl_s),
                "email": "buzz@example.test", "emailConfirmed": True, "active": True}

    def _token(self, kind: str, ttl_s: float) -> str:
        exp = self.clock() + ttl_s
        scope = "com.atproto.appPass" if kind == "access" else "com.atproto.refresh"
        claims = {"scope": scope, "sub": DID, "iat": int(self.clock()), "exp": int(exp),
                  "jti": str(next(self._serial))}
        token = ".".join(_b64(part) for part in ({"typ": "at+jwt", "alg": "HS256"}, claims,
                                                 {"sig": claims["jti"]}))
        with self._store:
            self._tokens[token] = (kind, exp)
        return token

    def _refused(self, request: Request, kind: str) -> Response | None:
        """None if the request's bearer token is a live `kind` token, else the PDS's answer."""
        token = _bearer(request)
        if not token:
            return Response(401, MISSING)
        with self._store:
            found = self._tokens.get(token)
        if found is None:
            return Response(400, REVOKED if kind == "refresh" else INVALID)
        if found[0] != kind:
            return Response(400, INVALID)
        if found[1] <= self.clock():
            return Response(400, EXPIRED)
        return None

    def _create_record(self, request: Request) -> Response:
        body = request.json() or {}
        rkey, record = body.get("rkey"), body.get("record")
        if body.get("repo") not in (DID, HANDLE) or body.get("collection") != COLLECTION:
            return Response(400, {"error": "InvalidRequest", "message": "Invalid repo"})
        if not isinstance(record, dict) or record.get("$type") != COLLECTION \
                or not isinstance(record.get("text"), str) or "createdAt" not in record:
            return Response(400, {"error": "InvalidRequest",
                                  "message": "Invalid app.bsky.feed.post record"})
        with self._store:
            if rkey in self.records:
                if self.existing_key == "named":
                    # atproto PR #4728: InvalidRequestError(err.message, 'RecordAlreadyExists')
                    return Response(400, {"error": "RecordAlreadyExists", "message":
                                          f"Record already exists: {COLLECTION}/{rkey}"})
                return Response(500, INTERNAL)
            cid = "bafyrei" + hashlib.sha256(json.dumps(record).encode()).hexdigest()[:52]
            self.records[rkey] = Record(rkey, record, cid)
        # createRecord's output (lexicons/com/atproto/repo/createRecord.json)
        return Response(200, {"uri": _uri(rkey), "cid": cid,
                              "commit": {"cid": cid, "rev": rkey}, "validationStatus": "valid"})

    def _get_record(self, request: Request) -> Response:
        repo = request.query.get("repo", [""])[0]
        rkey = request.query.get("rkey", [""])[0]
        collection = request.query.get("collection", [""])[0]
        with self._store:
            found = self.records.get(rkey) if repo in (DID, HANDLE) else None
        if found is None or collection != COLLECTION:
            # packages/pds/src/api/com/atproto/repo/getRecord.ts
            return Response(400, {"error": "RecordNotFound",
                                  "message": f"Could not locate record: {_uri(rkey)}"})
        return Response(200, {"uri": _uri(rkey), "cid": found.cid, "value": found.value})


def _uri(rkey: str) -> str:
    return f"at://{DID}/{COLLECTION}/{rkey}"


def _bearer(request: Request) -> str:
    auth = request.headers.get("Authorization", "")
    return auth[len("Bearer "):] if auth.startswith("Bearer ") else ""


def _b64(part: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()


def _limit_headers(limit: int, remaining: int, reset: int, window_s: int) -> dict[str, str]:
    """The PDS's rate-limit headers (xrpc-server/src/rate-limiter-http.ts setStatusHeaders):
    the reset is epoch seconds."""
    return {"RateLimit-Limit": str(limit), "RateLimit-Remaining": str(max(remaining, 0)),
            "RateLimit-Reset": str(reset), "RateLimit-Policy": f"{limit};w={window_s}"}
