"""Users and file modes as the unit sets them: the service user, group
buzzbotd, UMask=0027, StateDirectoryMode=0750, and root trying `run`.

These tests switch users with setpriv(1) (numeric ids, no passwd entries
needed), so they need root; elsewhere they are skipped, saying so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import REPO, write_config

SERVICE_UID = 61001       # the unit's User=buzzbotd
GROUP_GID = 61000         # the unit's Group=buzzbotd
ADMIN_UID = 61002         # an operator in group buzzbotd, not root

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="switching to the service and admin users needs root and setpriv(1)")


def as_service() -> tuple[str, ...]:
    return ("setpriv", f"--reuid={SERVICE_UID}", f"--regid={GROUP_GID}", "--clear-groups")


def start_service(spawn, config: Path):
    """The daemon as the unit runs it: the service user, UMask=0027; once READY."""
    old_umask = os.umask(0o027)       # setpriv sets none; the child inherits ours
    try:
        daemon = spawn(config, prefix=as_service())
    finally:
        os.umask(old_umask)
    daemon.wait_log("buzzbotd: ready: ", timeout=30)
    return daemon


def as_admin() -> tuple[str, ...]:
    return ("setpriv", f"--reuid={ADMIN_UID}", f"--regid={ADMIN_UID}",
            f"--groups={GROUP_GID}")


def buzzbotd(prefix: tuple[str, ...], *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "BUZZBOTD_CONFIG")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([*prefix, sys.executable, "-m", "buzzbotd", *args], capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=60)


@pytest.fixture
def host() -> Iterator[Path]:
    """A directory other users can reach (pytest's tmp_path is root-only), with
    state and run directories as systemd makes them for the unit."""
    base = Path(tempfile.mkdtemp(prefix="buzzbotd-perm-", dir="/tmp"))
    base.chmod(0o755)
    for name in ("state", "run"):
        (base / name).mkdir(mode=0o750)
        os.chown(base / name, SERVICE_UID, GROUP_GID)
    yield base
    shutil.rmtree(base)


@needs_root
def test_status_works_for_a_group_member_whether_the_daemon_runs_or_not(
        host: Path, spawn) -> None:
    config = write_config(host)
    config.chmod(0o644)
    daemon = start_service(spawn, config)
    database = host / "state" / "buzzbotd.db"
    assert (database.stat().st_uid, database.stat().st_gid) == (SERVICE_UID, GROUP_GID)
    assert database.stat().st_mode & 0o777 == 0o640
    running = buzzbotd(as_admin(), "status", "--config", str(config))
    assert running.returncode == 0, running.stderr
    assert f"daemon: running (pid {daemon.pid})" in running.stdout, running.stdout
    assert daemon.terminate() == 0, daemon.log
    # A clean stop checkpoints and removes -wal and -shm; the group may not create them.
    assert not Path(f"{database}-shm").exists()
    stopped = buzzbotd(as_admin(), "status", "--config", str(config))
    assert stopped.returncode == 0, stopped.stderr
    assert "daemon: not running" in stopped.stdout, stdout_and_err(stopped)
    assert "readonly" not in stdout_and_err(stopped)
    # Reading changed nothing an admin could not write: no files of the admin's left behind.
    assert all(p.stat().st_uid == SERVICE_UID for p in (host / "state").iterdir())
    # After kill -9 the -wal and -shm stay behind (owned by the service, 0640).
    again = start_service(spawn, config)
    again.kill9()
    assert Path(f"{database}-wal").exists()
    crashed = buzzbotd(as_admin(), "status", "--config", str(config))
    assert crashed.returncode == 0, crashed.stderr
    assert "daemon: not running" in crashed.stdout, stdout_and_err(crashed)
    # And someone outside the group still cannot read it.
    outsider = buzzbotd(("setpriv", "--reuid=61003", "--regid=61003", "--clear-groups"),
                        "status", "--config", str(config))
    assert outsider.returncode == 1 and "Traceback" not in outsider.stderr, outsider.stderr


def stdout_and_err(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


@needs_root
def test_root_is_refused_on_the_service_users_state(host: Path) -> None:
    config = write_config(host)
    before = sorted(p.name for p in (host / "state").iterdir())
    result = buzzbotd((), "run", "--config", str(config))
    assert result.returncode == 78, stdout_and_err(result)
    state = host / "state"
    assert (f"{state} belongs to uid {SERVICE_UID}, but this is root" in result.stderr
            ), result.stderr
    assert f"sudo -u '#{SERVICE_UID}' buzzbotd run --config {config}" in result.stderr
    assert "systemctl start buzzbotd" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in state.iterdir()) == before, "it must not touch the state"
    assert not (host / "run" / "buzzbotd.lock").exists()
    # A database of the service's in a root-owned directory is refused as well.
    os.chown(state, 0, 0)
    (state / "buzzbotd.db").touch()
    os.chown(state / "buzzbotd.db", SERVICE_UID, GROUP_GID)
    result = buzzbotd((), "run", "--config", str(config))
    assert result.returncode == 78, stdout_and_err(result)
    assert f"{state / 'buzzbotd.db'} belongs to uid {SERVICE_UID}" in result.stderr
