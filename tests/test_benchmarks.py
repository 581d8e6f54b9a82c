"""The benchmarks run and print a full table (their figures are reported, not judged)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import REPO
from tools.bench import BENCHMARKS


# Beyond the suite's 300 s: the quick run took 216-300+ s on a loaded 2-core machine,
# and a test stopped by pytest-timeout would leave the bench running under the next
# tests. subprocess.run's own timeout (600 s) ends it first, and kills it.
@pytest.mark.long              # make trials; make bench runs the full one
@pytest.mark.timeout(700)
def test_every_benchmark_runs_and_prints_its_rows() -> None:
    out = subprocess.run([sys.executable, "-m", "tools.bench", "--quick"],
                         capture_output=True, text=True, cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ")][2:]
    assert len(rows) >= len(BENCHMARKS), out.stdout
    assert all(line.count(" | ") == 3 for line in rows), out.stdout
    assert "Traceback" not in out.stderr
