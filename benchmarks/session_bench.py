"""How long a vfd session takes to start and end, against plain ``docker run``, in one run.

On a fresh node (``vfd up`` on a temporary state directory, SQLite, sessions on, a node name of
its own; the session tests' harness, ``tests/sessions/sessionnode.py``) with two folders
``f1`` and ``f2``, it measures, over N interleaved rounds (the order rotates each round):

* ``vfd run``     — ``vfd run --rm -m f1 -m f2 IMAGE true``: from starting the CLI to its exit;
* ``docker run``  — ``docker run --rm -v <rw view of f1>:/home/work/f1 -v <… f2>:/home/work/f2
  IMAGE true``: the same binds, docker's defaults otherwise (the reference; target: vfd at most
  1.5x its median);
* ``docker same`` — ``docker run --rm`` with everything a vfd container gets (user, ``--init``,
  no-new-privileges, limits, HOME and its scratch bind, labels), copied from ``docker inspect``
  of a vfd session's container: what of the gap is docker's work for those flags, not vfd's;
* ``vfd CLI``     — ``vfd status --json``: the CLI's start-up and one API round trip, the floor
  under every ``vfd`` command.

Then N times ``vfd run -d IMAGE sleep 600`` and the time until the API says ``running`` (polled
every 5 ms), each session destroyed with ``--force`` after.

For every vfd session it reads the session's recorded events and splits the time into phases
(client clock and the daemon's event times are the same machine's clock): CLI start to
``pending`` (start-up, the request, validation, the store), ``pending → scheduled`` (the
scheduler's wake-up: ``[sessions] schedule_interval`` when nothing wakes it), ``scheduled →
preparing → running`` (scratch directory, dotfiles, docker create and start), ``running →``
final (the command itself, noticing its exit), and final to the CLI's exit (the END frame,
auto-remove, CLI exit). The medians of those say where the time goes.

Usage (as root, docker running, ``scripts/build-test-image.sh`` run or run here):
``python benchmarks/session_bench.py [--runs 10] [--schedule-interval S] [--json]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "sessions"))

from sessionnode import (  # noqa: E402
    IMAGE,
    SessionNode,
    build_image,
    docker_missing,
    fuse_missing,
    start_node,
    stop_node,
)

TARGET = 1.5
VFD = str(Path(sys.executable).parent / "vfd")
PHASES = ("cli→pending", "pending→scheduled", "scheduled→preparing", "preparing→running")
RUN_PHASES = (*PHASES, "running→final", "final→cli exit")


def _timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float, float]:
    """Run ``argv`` (output dropped; a failure stops the benchmark): its start and end on the
    wall clock, and its duration on the monotonic clock."""
    wall = time.time()
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    took = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"session_bench: {' '.join(argv)} exited {done.returncode}:\n{done.stderr}")
    return wall, wall + took, took


def _stamp(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _events(session: dict[str, Any]) -> dict[str, float]:
    """The first time the session reached each status (wall-clock seconds)."""
    seen: dict[str, float] = {}
    for event in session.get("events", []):
        seen.setdefault(event["status"], _stamp(event["at"]))
    return seen


def _phases(events: dict[str, float], cli_start: float, cli_end: float | None) -> dict[str, float]:
    points = [("cli", cli_start)]
    points += [
        (s, events[s]) for s in ("pending", "scheduled", "preparing", "running") if s in events
    ]
    final = [events[s] for s in ("terminated", "cancelled", "error") if s in events]
    if final:
        points.append(("final", min(final)))
    if cli_end is not None:
        points.append(("cli exit", cli_end))
    out: dict[str, float] = {}
    for (a, ta), (b, tb) in itertools.pairwise(points):
        out[f"{a}→{b}"] = tb - ta
    return out


class Bench:
    """The node, its two folders, and the commands measured."""

    def __init__(self, node: SessionNode, image: str) -> None:
        self.node = node
        self.image = image
        self.env = {**os.environ, **node.env}
        views = []
        for name in ("f1", "f2"):
            created = node.run("vfolder", "create", name)
            if created.returncode != 0:
                sys.exit(f"session_bench: vfolder create {name}: {created.stderr}")
            with node.http() as http:
                folder = http.get(f"/v1/vfolders/{name}").json()
            views.append(folder["views"]["rw"])
        self.binds = [f"{views[0]}:/home/work/f1", f"{views[1]}:/home/work/f2"]
        self.same_flags: list[str] = []
        self.home = tempfile.mkdtemp(prefix="vfd-bench-home-", dir="/tmp")
        """``/home/work`` of the ``docker same`` containers."""

    def session(self, ref: str) -> dict[str, Any]:
        with self.node.http() as http:
            answer = http.get(f"/v1/sessions/{ref}")
            answer.raise_for_status()
            out: dict[str, Any] = answer.json()
        return out

    def newest(self) -> dict[str, Any]:
        with self.node.http() as http:
            sessions = http.get("/v1/sessions", params={"all": "true"}).json()["sessions"]
        return self.session(sessions[0]["id"])

    def vfd_run(self) -> tuple[float, dict[str, float]]:
        start, end, took = _timed(
            [VFD, "run", "--rm", "-m", "f1", "-m", "f2", self.image, "true"], self.env
        )
        return took, _phases(_events(self.newest()), start, end)

    def docker_run(self) -> float:
        binds = [a for b in self.binds for a in ("-v", b)]
        return _timed(["docker", "run", "--rm", *binds, self.image, "true"])[2]

    def docker_same(self) -> float:
        return _timed(["docker", "run", "--rm", *self.same_flags, self.image, "true"])[2]

    def cli_floor(self) -> float:
        return _timed([VFD, "status", "--json"], self.env)[2]

    def to_running(self, probe: bool = False) -> tuple[float, dict[str, float]]:
        """``vfd run -d`` until the API says running; the session is destroyed after."""
        argv = [VFD, "run", "-d", "-m", "f1", "-m", "f2", self.image, "sleep", "600"]
        wall = time.time()
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, env=self.env, check=False)
        if done.returncode != 0:
            sys.exit(f"session_bench: vfd run -d exited {done.returncode}:\n{done.stderr}")
        ref = done.stdout.split()[0]  # "SHORT_ID NAME"
        deadline = start + 120
        while True:
            seen = self.session(ref)
            if seen["status"] == "running":
                took = time.perf_counter() - start
                break
            if seen["status"] in ("terminated", "cancelled", "error"):
                sys.exit(f"session_bench: session {ref} ended {seen['status']}: {seen}")
            if time.perf_counter() > deadline:
                sys.exit(f"session_bench: session {ref} not running after 120 s: {seen}")
            time.sleep(0.005)
        if probe:
            self.same_flags = _flags_of(seen["container_id"], self.home)
        phases = _phases(_events(seen), wall, None)
        gone = subprocess.run(
            [VFD, "session", "destroy", "--force", ref], capture_output=True, env=self.env
        )
        if gone.returncode != 0:
            sys.exit(f"session_bench: destroy {ref}: {gone.stderr!r}")
        self.node.wait_status(ref, {"terminated", "cancelled", "error"})
        return took, phases


def _flags_of(container: str, home: str) -> list[str]:
    """``docker run`` options that make a container like ``container`` (a vfd session's), with
    ``home`` in place of its scratch ``/home/work``."""
    raw = subprocess.run(
        ["docker", "inspect", container], capture_output=True, text=True, check=True
    ).stdout
    info = json.loads(raw)[0]
    host, conf = info["HostConfig"], info["Config"]
    flags: list[str] = []
    for m in info.get("Mounts", []):
        if m.get("Type") == "bind":
            source = m["Source"]
            if m["Destination"] == "/home/work":  # the session's scratch: gone with it
                source = home
                ids = [int(x) for x in (conf.get("User") or "0").split(":")]
                os.chown(home, ids[0], ids[-1])
            flags += ["-v", f"{source}:{m['Destination']}{'' if m.get('RW') else ':ro'}"]
    if conf.get("User"):
        flags += ["--user", conf["User"]]
    if conf.get("WorkingDir"):
        flags += ["--workdir", conf["WorkingDir"]]
    for item in conf.get("Env") or []:
        if not item.startswith("PATH="):
            flags += ["--env", item]
    for key, value in (conf.get("Labels") or {}).items():
        if key != "vfd.session":  # another id: the node's reconciliation must not adopt it
            flags += ["--label", f"{key}=bench-{value}" if key == "vfd.node" else f"{key}={value}"]
    if host.get("Init"):
        flags.append("--init")
    flags += [f"--cap-drop={c}" for c in host.get("CapDrop") or []]
    flags += [f"--cap-add={c}" for c in host.get("CapAdd") or []]
    if host.get("PidsLimit"):
        flags += ["--pids-limit", str(host["PidsLimit"])]
    if host.get("ReadonlyRootfs"):
        flags.append("--read-only")
    for opt in host.get("SecurityOpt") or []:
        flags += ["--security-opt", opt]
    if host.get("NanoCpus"):
        flags += ["--cpus", f"{host['NanoCpus'] / 1e9:g}"]
    if host.get("Memory"):
        flags += ["--memory", str(host["Memory"])]
    if host.get("NetworkMode") and host["NetworkMode"] != "default":
        flags += ["--network", host["NetworkMode"]]
    return flags


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def _row(label: str, values: list[float], ref: float | None) -> str:
    med = statistics.median(values)
    ratio = f"{med / ref:6.2f}x" if ref else "      "
    return f"  {label:<14} {med * 1000:9.0f} {_p90(values) * 1000:9.0f}   {ratio}"


def _phase_table(title: str, rows: list[dict[str, float]], names: tuple[str, ...]) -> list[str]:
    lines = [f"{title} (median ms per phase, from the session's events):"]
    for name in names:
        values = [r[name] for r in rows if name in r]
        if values:
            lines.append(f"  {name:<22} {statistics.median(values) * 1000:8.0f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="rounds of each (default 10)")
    parser.add_argument("--image", default=IMAGE)
    parser.add_argument(
        "--schedule-interval",
        type=float,
        default=None,
        help="the node's [sessions] schedule_interval (default: vfd's default)",
    )
    parser.add_argument("--json", action="store_true", help="also print the raw figures")
    args = parser.parse_args()
    why = fuse_missing() or docker_missing()
    if why is None and os.geteuid() != 0:
        why = "run it as root (vfd up with FUSE, docker)"
    if why:
        sys.exit(f"session_bench: {why}")
    if args.image == IMAGE:
        build_image()
    extra = "[sessions]\n"
    if args.schedule_interval is not None:
        extra += f"schedule_interval = {args.schedule_interval}\n"
    node = start_node(extra)
    try:
        bench = Bench(node, args.image)
        try:
            report(bench, args.runs, args.json, args.schedule_interval)
        finally:
            shutil.rmtree(bench.home, ignore_errors=True)
    finally:
        stop_node(node)


def report(bench: Bench, runs: int, raw: bool, interval: float | None) -> None:
    bench.to_running(probe=True)  # warms up both paths; copies a vfd container's flags
    bench.docker_run()
    bench.vfd_run()
    times: dict[str, list[float]] = {
        "vfd run": [],
        "docker run": [],
        "docker same": [],
        "vfd CLI": [],
    }
    run_phases: list[dict[str, float]] = []
    steps = [
        ("docker run", bench.docker_run),
        ("docker same", bench.docker_same),
        ("vfd CLI", bench.cli_floor),
    ]
    for i in range(runs):
        order = ["vfd", *[s[0] for s in steps]]
        order = order[i % len(order) :] + order[: i % len(order)]
        for name in order:
            if name == "vfd":
                took, phases = bench.vfd_run()
                times["vfd run"].append(took)
                run_phases.append(phases)
            else:
                times[name].append(dict(steps)[name]())
    running: list[float] = []
    running_phases: list[dict[str, float]] = []
    for _ in range(runs):
        took, phases = bench.to_running()
        running.append(took)
        running_phases.append(phases)

    ref = statistics.median(times["docker run"])
    same = statistics.median(times["docker same"])
    vfd = statistics.median(times["vfd run"])
    print(f"\nsession_bench: {runs} rounds, image {bench.image}, binds {', '.join(bench.binds)}")
    print(f"  node's schedule_interval: {interval if interval is not None else 'default'}")
    print("\nstart to exit of `true`     median ms   p90 ms   to docker run")
    print(_row("docker run", times["docker run"], ref))
    print(_row("docker same", times["docker same"], ref))
    print(_row("vfd run", times["vfd run"], ref))
    print(_row("vfd CLI", times["vfd CLI"], ref))
    verdict = "meets" if vfd <= TARGET * ref else "MISSES"
    print(
        f"\nvfd run / docker run = {vfd / ref:.2f}x (target <= {TARGET}x: {verdict}); "
        f"vfd run / docker same flags = {vfd / same:.2f}x"
    )
    print(
        f"`vfd run -d` to running: median {statistics.median(running) * 1000:.0f} ms, "
        f"p90 {_p90(running) * 1000:.0f} ms"
    )
    print()
    print("\n".join(_phase_table("vfd run --rm", run_phases, RUN_PHASES)))
    print("\n".join(_phase_table("vfd run -d to running", running_phases, PHASES)))
    if raw:
        print(
            json.dumps(
                {
                    "times": times,
                    "to_running": running,
                    "run_phases": run_phases,
                    "running_phases": running_phases,
                    "same_flags": bench.same_flags,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
