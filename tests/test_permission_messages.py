"""A command run as a user who may not use the state or lock directory gets
one line naming the path and the user, never a traceback (issue 14: `sudo -u
buzzbotd buzzbotd run` before the service ever created /var/lib/buzzbotd)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.support import REPO, write_config

# As root the test runs the command as `nobody`, who may not be able to reach
# the venv's interpreter (pyenv under /root): Debian's own python3, which the
# package runs on, is enough, since the checks come before any dependency import.
PYTHON = "/usr/bin/python3" if os.geteuid() == 0 else sys.executable


def _as_other_user(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Runs `python -m buzzbotd args` as `nobody` when we are root (root may
    write anywhere), else as ourselves; the directories the test locks are
    root's or 0000."""
    args = [PYTHON, "-m", "buzzbotd", *args]
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONPATH": str(REPO),
           "PYTHONDONTWRITEBYTECODE": "1"}
    preexec = None
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")

        def preexec() -> None:
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=30, preexec_fn=preexec)


def _user() -> str:
    return "nobody" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name


@pytest.fixture
def public() -> Path:
    """A directory every user can reach (pytest's tmp_path lives under a 0700
    parent), so that nobody can read the config written there."""
    if os.geteuid() == 0 and not os.access(PYTHON, os.X_OK):
        pytest.fail(f"{PYTHON} is needed to run a command as nobody")
    directory = Path(tempfile.mkdtemp(prefix="buzzbotd-perm-"))
    directory.chmod(0o755)
    yield directory
    for path in directory.rglob("*"):
        if path.is_dir():
            path.chmod(0o700)
    shutil.rmtree(directory)


@pytest.fixture
def locked_dir(public: Path) -> Path:
    """A directory in `public` the command's user may not enter or write."""
    locked = public / "locked"
    locked.mkdir(mode=0o700 if os.geteuid() == 0 else 0o000)
    return locked


def test_run_names_the_state_dir_it_cannot_create_and_the_user(public: Path,
                                                                locked_dir: Path) -> None:
    config = write_config(public, daemon={"state_dir": str(locked_dir / "state")})
    config.chmod(0o644)
    done = _as_other_user(["run", "--config", str(config)],
                          public)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"{locked_dir / 'state'}: cannot be created for user {_user()}" in lines[0]
    assert f"{locked_dir} is owned by" in lines[0]
    assert "sudo -u buzzbotd buzzbotd run" in lines[0]
    assert not (locked_dir / "state").exists()


def test_run_names_the_lock_dir_it_cannot_create(public: Path, locked_dir: Path) -> None:
    config = write_config(public, daemon={"lock_file": str(locked_dir / "run" / "x.lock")})
    config.chmod(0o644)
    (public / "state").mkdir(mode=0o777)
    (public / "state").chmod(0o777)
    done = _as_other_user(["run", "--config", str(config)],
                          public)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert f"{locked_dir / 'run'}: cannot be created for user {_user()}" in done.stderr


def test_status_names_the_state_dir_it_cannot_read_and_the_user(public: Path,
                                                                 locked_dir: Path) -> None:
    config = write_config(public, daemon={"state_dir": str(locked_dir)})
    config.chmod(0o644)
    done = _as_other_user(["status", "--config", str(config)],
                          public)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith(f"buzzbotd: {locked_dir}: permission denied for user "
                                  f"{_user()} ({locked_dir} is owned by "), done.stderr
