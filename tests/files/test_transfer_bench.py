"""``benchmarks/transfer_bench.py`` runs to the end on a real node and prints its ratios.

Tiny sizes and one round: the figures are not checked (a loaded CI machine says nothing about
them), only that every path the benchmark drives still works against today's CLI and API, and
that the report names the references it measured in the same run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from filenode import fuse_missing

BENCH = Path(__file__).parents[2] / "benchmarks" / "transfer_bench.py"
RATIO = r"\d+\.\d\d"


@pytest.mark.slow
def test_transfer_bench_runs_one_tiny_round_and_prints_ratios() -> None:
    why = fuse_missing() or (None if os.geteuid() == 0 else "needs root (vfd up mounts FUSE)")
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"the transfer benchmark needs FUSE and root in CI: {why}")
        pytest.skip(why)
    argv = [sys.executable, str(BENCH), "--size", "3M", "--files", "40", "--runs", "1"]
    # a short path: the node's unix sockets lie under it (at most 107 bytes)
    work = Path(tempfile.mkdtemp(prefix="vfd-tb-", dir="/tmp"))
    argv += ["--inodes", "300", "--cli-runs", "1", "--dir", str(work)]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=600, check=False, stdin=subprocess.DEVNULL
        )
        left = list(work.iterdir())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    print(out)
    assert "uploads are durable on both sides" in out
    for label in ("cp + sync FILE", "cp", "tar | tar + sync -f", "tar | tar"):
        assert re.search(rf"^  {re.escape(label)} +\d+\.\d{{3}} +\d+\.\d{{3}} +\d+$", out, re.M), (
            label,
            out,
        )
    subjects = [
        ("vfd vfolder upload", 0.8),
        ("curl PUT \\(raw API\\)", 0.9),
        ("vfd vfolder download", 0.8),
        ("curl GET \\(raw API\\)", 0.9),
        ("curl archive \\| tar", 0.5),
    ]
    for label, target in subjects:
        line = (
            rf"^  {label} +\d+\.\d{{3}} +\d+\.\d{{3}} +\d+ +{RATIO}  >= {target}: "
            r"(meets|MISSES|MISSES \(nginx too\))$"
        )
        assert re.search(line, out, re.M), (label, out)
    # the reference HTTP server (nginx, installed by make test) in the same run, and the raw
    # API's archive upload (a figure without a target)
    for label in ("curl PUT to nginx \\+ sync", "curl GET from nginx", "tar \\| curl PUT archive"):
        assert re.search(rf"^  {label} +\d+\.\d{{3}} +\d+\.\d{{3}} +\d+ +{RATIO}$", out, re.M), (
            label,
            out,
        )
    # the directory rows of the CLI have the 0.5 target
    assert (
        len(re.findall(r"^  vfd vfolder (up|down)load .* >= 0\.5: (meets|MISSES)$", out, re.M)) == 2
    )
    # one verdict line: how many of the seven targets were met, which were missed
    verdict = re.search(r"^targets: (\d) of 7 met(; missed: .*)?$", out, re.M)
    assert verdict, out
    assert out.count("meets") == int(verdict[1]), out
    assert re.search(r"^  fds +\d+ -> \d+: -?\d+ per 100,000 cached inodes$", out, re.M), out
    assert re.search(r"^  VmRSS [\d.]+ -> [\d.]+ MiB: -?[\d.]+ MiB per 100,000", out, re.M), out
    assert re.search(r"^  stat errors: none$", out, re.M), out
    for command in ("vfd --help", "vfd vfolder list"):
        assert re.search(rf"^  {command} +\d+\.\d{{3}} s$", out, re.M), (command, out)
    assert left == []  # the benchmark's work directory (and its node's) is gone
