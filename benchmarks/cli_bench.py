"""How long the ``vfd`` command takes to start and answer, against a bare Python, in one run.

Measured, over N interleaved rounds (the order rotates each round), as wall time from starting
the process to its exit:

* ``python -c pass``   — the interpreter alone (the venv's python): the floor;
* ``vfd --help``       — start-up and help (no config, no daemon);
* ``vfd vfolder list`` — start-up, the config, one API round trip, a table;
* ``vfd status``       — the same with the status answer (and the installed version);
* ``vfd run --help``   — start-up and a sub-command's (rich) help, what ``vfd run`` loads
  before its request.

The commands run against a running node: ``--state-dir DIR`` of one started with
``vfd --state-dir DIR up``, or, without it, a node this script starts on a temporary state
directory (as root, FUSE available) and stops with SIGINT at the end. The target of the fast
CLI is at most 0.15 s for ``vfd --help`` and ``vfd vfolder list`` on an idle machine; on a
loaded one compare with the ``python -c pass`` line of the same run.

With ``--other SRC`` the same commands also run from another source tree (``SRC`` is its
``src/``, e.g. ``git archive HEAD~3 src | tar -x -C /tmp/old``), interleaved in the same
rounds: before/after figures taken under the same load.

Usage: ``python benchmarks/cli_bench.py [--runs 20] [--state-dir DIR] [--other SRC] [--json]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
VFD = str(VENV_BIN / "vfd")
TARGET_S = 0.15
"""The fast CLI's target: ``vfd --help`` and ``vfd vfolder list`` each at most this median."""
TARGETS = ("vfd --help", "vfd vfolder list")


# the other tree's CLI started as the console script starts it (its quick exit included)
MAIN = """
import sys
sys.path.insert(0, sys.argv.pop(1))
try:
    from vfd.cli.entry import run
except ImportError:  # a tree from before the console script's own entry point
    from vfd.cli.main import main as run
sys.exit(run())
"""


def _cases(state_dir: Path, other: Path | None) -> dict[str, list[str]]:
    node = ["--state-dir", str(state_dir)]
    commands = {"--help": ["--help"], "vfolder list": [*node, "vfolder", "list"]}
    commands["status"] = [*node, "status"]
    commands["run --help"] = ["run", "--help"]
    cases = {"python -c pass": [sys.executable, "-c", "pass"]}
    for name, args in commands.items():
        cases[f"vfd {name}"] = [VFD, *args]
        if other is not None:  # the same command from another source tree (another commit)
            cases[f"vfd {name} [other]"] = [sys.executable, "-c", MAIN, str(other), *args]
    return cases


def _wall(argv: list[str]) -> float:
    start = time.perf_counter()
    env = {**os.environ, "COLUMNS": "100"}
    done = subprocess.run(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False, env=env
    )
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.decode()}")
    return took


@contextlib.contextmanager
def _node(state_dir: Path | None) -> Iterator[Path]:
    """The state directory of a running node: the one given, or one started here."""
    if state_dir is not None:
        yield state_dir
        return
    with tempfile.TemporaryDirectory(prefix="vfd-cli-bench-") as tmp:
        where = Path(tmp) / "state"
        log = open(Path(tmp) / "up.log", "wb")  # noqa: SIM115 - closed below
        up = subprocess.Popen([VFD, "--state-dir", str(where), "up"], stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 60
            while True:
                probe = [VFD, "--state-dir", str(where), "status"]
                if subprocess.run(probe, capture_output=True, check=False).returncode == 0:
                    break
                if up.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"vfd up did not start: {(Path(tmp) / 'up.log').read_text()}")
                time.sleep(0.2)
            yield where
        finally:
            up.send_signal(signal.SIGINT)
            try:
                up.wait(60)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait()
            log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="rounds (default 20)")
    parser.add_argument("--state-dir", type=Path, help="a running node's state directory")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--other",
        type=Path,
        metavar="SRC",
        help="also time the commands from this source tree's src/ (e.g. `git archive` of "
        "another commit), in the same rounds",
    )
    args = parser.parse_args()
    os.environ.pop("VFD_TRACEBACK", None)
    # the warm-up writes the .pyc files, as an installed vfd has them: without them every
    # changed module is compiled again at each start
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    with _node(args.state_dir) as state_dir:
        cases = _cases(state_dir, args.other)
        for argv in cases.values():  # warm the page cache and the .pyc files
            _wall(argv)
        times: dict[str, list[float]] = {name: [] for name in cases}
        names = list(cases)
        for round_ in range(args.runs):
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                times[name].append(_wall(cases[name]))
    result = {
        name: {
            "median_s": round(statistics.median(values), 4),
            "min_s": round(min(values), 4),
            "max_s": round(max(values), 4),
        }
        for name, values in times.items()
    }
    targets = {
        name: {"median_s": result[name]["median_s"], "met": result[name]["median_s"] <= TARGET_S}
        for name in TARGETS
    }
    if args.json:
        report = {"runs": args.runs, "load": os.getloadavg(), "wall": result}
        print(json.dumps({**report, "target_s": TARGET_S, "targets": targets}, indent=2))
        return
    print(f"{args.runs} rounds, load average {os.getloadavg()[0]:.2f} (wall time, seconds)")
    print(f"{'command':<28} {'median':>8} {'min':>8} {'max':>8}")
    for name, figures in result.items():
        print(
            f"{name:<28} {figures['median_s']:>8.3f} {figures['min_s']:>8.3f} "
            f"{figures['max_s']:>8.3f}"
        )
    for name, target in targets.items():
        verdict = "met" if target["met"] else "NOT met"
        print(f"{name}: median {target['median_s']:.3f} s, target <= {TARGET_S} s: {verdict}")


if __name__ == "__main__":
    main()
