"""PostgreSQL's driver (psycopg 3, loaded on first use) and a connection as every
part of buzzbotd opens one: libpq's and the server's timeouts, so a cut-off
connection is noticed within seconds (the owner's, the leadership lock's,
migrate-db's)."""

from __future__ import annotations

import sys
from typing import Any

import peewee

from buzzbotd.db.owner import DatabaseError

# How a cut-off connection is noticed (SPEC: a leader stops within 5 s). The
# client side: libpq's keepalives and tcp_user_timeout; the server side (it
# releases the leader's advisory lock when it drops the session): the same
# GUCs, set per session. A statement never waits longer than STATEMENT_S.
CONNECT_TIMEOUT_S = 3
STATEMENT_S = 3
LIBPQ_OPTIONS = {
    "connect_timeout": CONNECT_TIMEOUT_S,
    "keepalives": 1, "keepalives_idle": 1, "keepalives_interval": 1, "keepalives_count": 2,
    "tcp_user_timeout": 3000,
    "application_name": "buzzbotd",
}
SERVER_OPTIONS = (f"-c statement_timeout={STATEMENT_S * 1000} -c lock_timeout=2000 "
                  "-c idle_in_transaction_session_timeout=10000 "
                  "-c tcp_keepalives_idle=1 -c tcp_keepalives_interval=1 "
                  "-c tcp_keepalives_count=2 -c tcp_user_timeout=3000 -c TimeZone=UTC")
class NotLeader(DatabaseError):
    """A fenced write of a daemon that is no longer the leader: never committed."""


def load_driver() -> Any:
    """psycopg, imported now; peewee is told about it (see the module's doc)."""
    if "psycopg" in sys.modules and sys.modules["psycopg"] is None:
        del sys.modules["psycopg"]       # the placeholder buzzbotd/__init__.py left
    try:
        import psycopg
        from psycopg.pq import TransactionStatus
        from psycopg.types.json import Json, Jsonb
    except ImportError as e:
        raise DatabaseError(f"database.url names PostgreSQL but its driver cannot be loaded "
                            f"({e}); install libpq5 (apt install libpq5)") from None
    if peewee.psycopg is None:
        peewee.psycopg, peewee.TransactionStatus = psycopg, TransactionStatus
        peewee.Json_pg3, peewee.Jsonb_pg3 = Json, Jsonb
        adapter = peewee.Psycopg3Adapter
        adapter.txn_idle = TransactionStatus.IDLE
        adapter.txn_inerror = TransactionStatus.INERROR
        adapter.txn_unknown = TransactionStatus.UNKNOWN
    return psycopg


def connect_params(password: str | None) -> dict[str, Any]:
    params: dict[str, Any] = dict(LIBPQ_OPTIONS, options=SERVER_OPTIONS)
    if password:
        params["password"] = password
    return params


def connect(url: str, password: str | None, autocommit: bool = True) -> Any:
    """A plain psycopg connection (the leadership lock's, migrate-db's)."""
    psycopg = load_driver()
    return psycopg.connect(url, autocommit=autocommit, **connect_params(password))
