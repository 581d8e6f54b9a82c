"""A real PostgreSQL server for tests: Debian's postgresql package, started by
the test run itself (initdb and pg_ctl from /usr/lib/postgresql/N/bin) in a
temporary directory, on 127.0.0.1 and a free port, as an unprivileged user
(postgres refuses to run as root, and the tests do run as root in CI).

With env CI set, a missing server is a failure (CI installs the package);
elsewhere the tests that need it are skipped with a loud reason. Never a mock.

The tests' server commits without waiting for its WAL flush
(synchronous_commit=off): a committed row is at once visible to every
connection and survives a kill -9 of a daemon, which is what the tests
do; only a crash of PostgreSQL itself (which no test makes) could lose the
last commits. It keeps a disk that stalls for seconds at a fsync (a busy CI
machine) out of the timing of tests about the daemon. `make bench` starts
its server with durable commits, so its figures include each commit's flush.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.net import free_port

USER = "buzzbotd"
PASSWORD = "test-secret-pw"


def pg_bin() -> Path | None:
    root = Path("/usr/lib/postgresql")
    for version in sorted(root.glob("*"), key=lambda p: -int(p.name) if p.name.isdigit() else 0):
        if (version / "bin" / "initdb").exists() and (version / "bin" / "pg_ctl").exists():
            return version / "bin"
    return None


def require_postgres() -> Path:
    """The server's bin directory, or a failure (CI) / a loud skip (elsewhere)."""
    found = pg_bin()
    if found is not None:
        return found
    reason = ("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): "
              "`apt-get install postgresql` to run the PostgreSQL backend's tests")
    if os.environ.get("CI"):
        pytest.fail(reason + " (CI must install it: see .ci/run)")
    pytest.skip("SKIPPED, NOT PASSED: " + reason)


@dataclass
class PostgresServer:
    bin: Path
    root: Path
    port: int
    host: str = "127.0.0.1"
    durable_commits: bool = False     # synchronous_commit (see the module's doc)

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres", port: int | None = None,
            password: bool = True) -> str:
        secret = f":{PASSWORD}" if password else ""
        return f"postgresql://{USER}{secret}@{self.host}:{port or self.port}/{database}"

    def _run_as(self) -> list[str]:
        if os.geteuid() != 0:
            return []
        uid, gid = self.ids
        return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]

    @property
    def ids(self) -> tuple[int, int]:
        """The server's uid and gid: user postgres, or nobody without the package's user."""
        try:
            entry = pwd.getpwnam("postgres")
        except KeyError:
            return 65534, 65534
        return entry.pw_uid, entry.pw_gid

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if os.geteuid() == 0:
            os.chown(self.root, *self.ids)
            os.chown(pwfile, *self.ids)
        self._pg("initdb", "-D", str(self.data), "-U", USER, f"--pwfile={pwfile}",
                 "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8")
        options = (f"-c listen_addresses={self.host} -p {self.port} "
                   f"-c unix_socket_directories={self.root} -c max_connections=200 "
                   "-c fsync=on -c synchronous_commit="
                   + ("on" if self.durable_commits else "off"))
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w",
                 "-t", "60", "-o", options, "start")

    def stop(self) -> None:
        if self.data.exists():
            self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop",
                     check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def _pg(self, tool: str, *args: str, check: bool = True) -> None:
        done = subprocess.run([*self._run_as(), str(self.bin / tool), *args], cwd=self.root,
                              capture_output=True, text=True, timeout=120)
        if check and done.returncode != 0:
            log = self.root / "log"
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr.strip()}"
                               + (f"\n{log.read_text()[-2000:]}" if log.exists() else ""))

    def create_database(self) -> str:
        """A fresh, empty database; returns its URL (with the password)."""
        from buzzbotd.db.pgdriver import load_driver

        psycopg = load_driver()
        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def start_server(durable_commits: bool = False) -> PostgresServer:
    server = PostgresServer(require_postgres(), Path(tempfile.mkdtemp(prefix="buzzbotd-pg-")),
                            free_port(), durable_commits=durable_commits)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    return server


def query_elsewhere(owner: Any, sql: str) -> list[tuple]:
    """`sql`'s rows, read on a connection of its own (not the owner's), on
    either backend."""
    if getattr(owner, "backend", "sqlite") == "sqlite":
        import sqlite3

        reader = sqlite3.connect(owner.path)
        try:
            return reader.execute(sql).fetchall()
        finally:
            reader.close()
    from buzzbotd.db.pgdriver import load_driver

    with load_driver().connect(owner.url, autocommit=True) as conn:
        return conn.execute(sql).fetchall()
