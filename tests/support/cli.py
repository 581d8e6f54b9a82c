"""`buzzbotd <command>` from a test: as a real process (`buzzbotd_process`), or by
the CLI's entry in this process (`run_in_process`, behind conftest.py's `cli`
fixture): the same exit status, stdout and stderr, without a Python start each."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.daemon import REPO

# What the CLI must not take from the test run's own environment.
OUTSIDE = ("CREDENTIALS_DIRECTORY", "BUZZBOTD_CONFIG", "NOTIFY_SOCKET")


def buzzbotd_process(*args: str, env: dict[str, str] | None = None, timeout: float = 30
                     ) -> subprocess.CompletedProcess:
    """`python -m buzzbotd <args>` as a real process."""
    environ = {k: v for k, v in os.environ.items() if k not in OUTSIDE}
    environ["PYTHONPATH"] = str(REPO)
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "buzzbotd", *args], capture_output=True,
                          text=True, env=environ, cwd=REPO, timeout=timeout)


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


@contextlib.contextmanager
def _logging_kept() -> Iterator[None]:
    """`run` routes the root logger to its stderr (journal.setup): undone after."""
    from buzzbotd.runtime import journal

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    chatty = {name: logging.getLogger(name).level for name in journal._CHATTY}
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        for name, old in chatty.items():
            logging.getLogger(name).setLevel(old)


def run_in_process(monkeypatch: pytest.MonkeyPatch, *args: str,
                   env: dict[str, str] | None = None) -> CliResult:
    """`buzzbotd <args>` by its entry, in this process: its exit status (what it
    returns, or a SystemExit's code), stdout and stderr."""
    from buzzbotd.cli import main

    with monkeypatch.context() as patched:
        for name in OUTSIDE:
            patched.delenv(name, raising=False)
        for name, value in (env or {}).items():
            patched.setenv(name, value)
        out, err = io.StringIO(), io.StringIO()
        with _logging_kept(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
    return CliResult(code, out.getvalue(), err.getvalue())
