"""The PostgreSQL backend: the same owner interface as SQLite's DatabaseOwner
(one thread, one writing connection, every call one transaction, retried
whole while the server cannot be reached), on psycopg 3.

The driver is psycopg 3's pure-Python implementation, which loads Debian's
libpq5 with ctypes: the package stays `Architecture: all`, and libpq brings
what the standby needs (TCP keepalives, tcp_user_timeout, connect_timeout).
It is imported only here, when database.url names PostgreSQL: peewee would
import it at its own import otherwise (buzzbotd/__init__.py stops that), and
an SQLite daemon would pay its ~150 ms and ~23 MiB for nothing.

Transactions run at REPEATABLE READ: a call sees one snapshot, and a row that
another transaction changed after it (a takeover's epoch, a ledger row) makes
the call fail with a serialisation error, retried whole, instead of acting on
what it read. Before any other statement a fenced call locks the leadership
row FOR SHARE and checks its daemon's epoch (db/leadership.py): a takeover
bumps the epoch, so a daemon that lost leadership cannot commit anything.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import peewee

from buzzbotd.config.database_url import masked
from buzzbotd.db import owner as _owner
from buzzbotd.db.owner import DatabaseError, DatabaseOwner, OwnerThreadOnly, Unavailable
from buzzbotd.db.pgdriver import NotLeader, connect_params, load_driver
from buzzbotd.ops.health import HEALTH, Health

if TYPE_CHECKING:
    from buzzbotd.clock import Clock
    from buzzbotd.db.leadership import Leadership

_RETRY_SQLSTATES = {"40001": "a concurrent change (serialisation failure); retried",
                    "40P01": "a deadlock; retried"}


class _OwnedPostgres(OwnerThreadOnly, peewee.PostgresqlDatabase):
    pass


def _lost_connection(error: BaseException, sqlstate: str | None) -> bool:
    """psycopg's word that the server is out of reach: SQLSTATE class 08 (connection)
    or 57 (operator intervention, e.g. a shutdown), or an error with no SQLSTATE at
    all (the socket broke). A failed statement (a full disk is 53100) is a failed
    write like SQLite's, not an outage to wait out."""
    if not type(error).__module__.startswith("psycopg"):
        return False
    if sqlstate is None:
        return type(error).__name__ in ("OperationalError", "InterfaceError")
    return sqlstate[:2] in ("08", "57")


class PostgresOwner(DatabaseOwner):
    """DatabaseOwner's interface on a PostgreSQL server."""

    def __init__(self, url: str, password: str | None = None,
                 on_beat: Callable[[], None] | None = None,
                 health: Health = HEALTH) -> None:
        self.url = url
        self._password = password
        # Set by leadership(): () → the epoch this daemon holds, or NotLeader.
        self.fence: Callable[[], int] | None = None
        super().__init__(Path(masked(url)), on_beat=on_beat, health=health)

    @property
    def backend(self) -> str:
        return "postgresql"

    def leadership(self, on_gained: Callable[[], None], on_lost: Callable[[str], None],
                   wall: Clock) -> Leadership:
        """The election among the daemons on this database (buzzbotd.db.leadership);
        this owner's fenced writes check the epoch it holds."""
        from buzzbotd.db.leadership import Leadership
        leadership = Leadership(self.url, self._password, on_gained=on_gained,
                                on_lost=on_lost, wall=wall)
        self.fence = leadership.fence
        return leadership

    def _make_db(self) -> peewee.Database:
        load_driver()
        return _OwnedPostgres(self.url, isolation_level="REPEATABLE READ", prefer_psycopg3=True,
                              **connect_params(self._password))

    def submit(self, fn: Callable[..., Any], *args: Any, transaction: bool = True,
               fenced: bool = True) -> Any:
        if transaction and not fenced:
            return super().submit(_unfenced, fn, *args)
        return super().submit(fn, *args, transaction=transaction)

    def _transaction(self, fn: Callable[..., Any]) -> Any:
        return _FencedTransaction(self, fenced=fn is not _unfenced)

    def _unavailable_reason(self, error: BaseException) -> Unavailable | None:
        """By the SQLSTATE: a conflict retried at once, or the server out of reach."""
        if isinstance(error, NotLeader):
            return None
        seen: BaseException | None = error
        while seen is not None:
            for candidate in (seen, *(a for a in seen.args if isinstance(a, BaseException))):
                state = getattr(candidate, "sqlstate", None)
                if state in _RETRY_SQLSTATES:
                    return Unavailable(_RETRY_SQLSTATES[state], waits_inside=False, alert=False)
                if _lost_connection(candidate, state):
                    if not self._db.is_closed():
                        self._db.close()      # a broken connection: the next try reconnects
                    return Unavailable("cannot reach PostgreSQL", waits_inside=False,
                                       alert=False)
            seen = seen.__context__
        return None

    def _end_failed_transaction(self) -> None:
        if self._db.is_closed():
            return
        try:
            conn = self._db.connection()
            if conn.pgconn.transaction_status != 0:     # not IDLE
                conn.rollback()
        except Exception as e:  # noqa: BLE001 - a dead connection is reopened on the next try
            _owner.log.warning("rollback after a failed write failed: %s", e)
            self._db.close()

    def _open(self) -> list[int]:
        from buzzbotd.db import migrations
        try:
            self._db.connect(reuse_if_open=True)
        except peewee.OperationalError as e:
            raise DatabaseError(f"database.url = {str(self.path)!r}: cannot connect to "
                                f"PostgreSQL: {str(e).strip()}") from None
        try:
            return migrations.migrate(self._db)
        except migrations.SchemaTooNew as e:
            raise _owner.DatabaseTooNew(f"{self.path}: {e}") from None

    def _close(self) -> None:
        if not self._db.is_closed():
            self._db.close()


class _FencedTransaction:
    """One owner call's transaction; a fenced one first checks the epoch."""

    def __init__(self, owner: PostgresOwner, fenced: bool) -> None:
        self.owner = owner
        self.fenced = fenced
        self.atomic = owner._db.atomic()

    def __enter__(self) -> None:
        self.atomic.__enter__()
        fence = self.owner.fence
        if fence is None or not self.fenced:
            return
        try:
            check_epoch(self.owner._db, fence())
        except BaseException:
            self.atomic.__exit__(*sys.exc_info())
            raise

    def __exit__(self, *exc: Any) -> Any:
        return self.atomic.__exit__(*exc)


def _unfenced(fn: Callable[..., Any], *args: Any) -> Any:
    """Runs inside the owner: fn, in a transaction that does not check the epoch
    (what every daemon writes about itself, leader or not)."""
    return fn(*args)


def check_epoch(db: peewee.Database, epoch: int) -> None:
    """Inside a transaction: NotLeader unless the leadership row still holds
    `epoch`. FOR SHARE keeps it so until this transaction ends: a takeover's
    UPDATE waits for our commit, and then its catch-up sees what we wrote."""
    row = db.execute_sql("SELECT epoch, host, pid FROM leadership WHERE id = 1 FOR SHARE"
                         ).fetchone()
    if row is None or row[0] != epoch:
        raise NotLeader(f"leadership moved (epoch {row[0] if row else '?'}, "
                        f"{row[1] if row else '?'} pid {row[2] if row else '?'}; ours was "
                        f"{epoch}): this daemon is no longer the leader; nothing committed")


def open_readonly(url: str, password: str | None) -> peewee.Database:
    """A read-only session for another process (`buzzbotd status`, `export`)."""
    from buzzbotd.db import migrations
    from buzzbotd.db.models import database
    load_driver()
    db = peewee.PostgresqlDatabase(url, prefer_psycopg3=True, **connect_params(password))
    try:
        db.connect()
        db.execute_sql("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        version = migrations.schema_version(db)
    except peewee.DatabaseError as e:
        db.close()
        raise DatabaseError(f"database.url = {masked(url)!r}: cannot read: "
                            f"{str(e).strip()}") from None
    if version != migrations.LATEST:
        db.close()
        raise DatabaseError(f"{masked(url)}: schema version {version}, this buzzbotd reads "
                            f"{migrations.LATEST}; start the daemon once to migrate it")
    database.initialize(db)
    return db


def daemons() -> list[dict[str, Any]]:
    """Every daemon on the database, for `status` (runs on any connection)."""
    from buzzbotd.db.models import database
    leader = database.execute_sql("SELECT host, pid, since, epoch FROM leadership").fetchone()
    nodes = database.execute_sql("SELECT name, host, pid, role, seen_at FROM daemon_node "
                                 "ORDER BY seen_at DESC LIMIT 20").fetchall()
    return [{"host": n[1], "pid": n[2], "role": n[3], "seen_at": n[4],
             "leader": bool(leader) and (n[1], n[2]) == (leader[0], leader[1])} for n in nodes]
