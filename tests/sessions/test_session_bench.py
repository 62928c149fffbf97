"""``benchmarks/session_bench.py`` runs to the end on a real node and prints its ratios.

One round only: the figures are not checked (a loaded CI machine says nothing about them),
only that every path the benchmark drives still works against today's API and CLI, and that
the report names the reference it measured in the same run.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from sessionnode import require_docker_and_fuse

BENCH = Path(__file__).parents[2] / "benchmarks" / "session_bench.py"


@pytest.mark.slow
def test_session_bench_runs_one_round_and_prints_ratios(image: str) -> None:
    require_docker_and_fuse()
    done = subprocess.run(
        [sys.executable, str(BENCH), "--runs", "1", "--schedule-interval", "5"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    print(out)
    for row in ("docker run", "docker same", "vfd run", "vfd CLI"):
        assert re.search(rf"^  {row} +\d+ +\d+ +\d+\.\d\dx$", out, re.M), (row, out)
    assert re.search(
        r"^vfd run / docker run = \d+\.\d\dx \(target <= 1\.5x: (meets|MISSES)\)", out, re.M
    )
    assert re.search(r"^`vfd run -d` to running: median \d+ ms, p90 \d+ ms$", out, re.M), out
    for phase in ("cli→pending", "pending→scheduled", "preparing→running", "final→cli exit"):
        assert re.search(rf"^  {phase} +\d+$", out, re.M), (phase, out)
    # the scheduler is woken by a new session: a 5 s interval must not show in its start
    scheduled = re.findall(r"^  pending→scheduled +(\d+)$", out, re.M)
    assert scheduled and all(int(ms) < 2500 for ms in scheduled), out
