"""How long one scheduling round takes for each built-in scheduler (no daemon, no store).

For each size N (default 1,000 / 10,000 / 100,000 pending sessions) it builds one snapshot:
N pending sessions from 100 users (asked for one second apart, the users interleaved at
random), each asking for 0.5 to 8 cpu and 1 to 16 GiB; 100 agents of 64 cpu and 256 GiB, each
already a random part used; every user already holding a random allocation. Then it times
``decide`` of each installed built-in (``fifo``, ``lifo``, ``drf``, loaded through the ``vfd``
entry points as the daemon loads them), plus ``fifo`` in its worst case: its head of the line
past ``hol_rounds``, so every session behind it is tried. The figure is the best of
``--repeat`` rounds (default 3) on the same snapshot; the target is under 0.5 s per round at
10,000 pending sessions.

Usage: ``python benchmarks/sched_bench.py [--sizes 1000,10000,100000] [--repeat 3] [--json]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from vfd.config import load_config
from vfd.plugins.manager import build_manager
from vfd.plugins.types import Agent, PendingSession, Resources, Scheduler, Snapshot

GiB = 2**30
USERS = 100
AGENTS = 100
TARGET = 0.5


def make_snapshot(pending: int, seed: int = 7) -> Snapshot:
    rng = random.Random(seed)
    users = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(USERS)]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    sessions = tuple(
        PendingSession(
            id=uuid.UUID(int=rng.getrandbits(128)),
            user_id=rng.choice(users),
            name=f"s{n}",
            created_at=start + timedelta(seconds=n),
            cpu=rng.choice((0.5, 1, 2, 4, 8)),
            memory=rng.choice((1, 2, 4, 8, 16)) * GiB,
        )
        for n in range(pending)
    )
    agents = tuple(
        Agent(
            id=f"node{i:03d}",
            group="default",
            cpu=64,
            memory=256 * GiB,
            used_cpu=rng.randint(0, 48),
            used_memory=rng.randint(0, 192) * GiB,
        )
        for i in range(AGENTS)
    )
    allocations = {u: Resources(rng.randint(0, 32), rng.randint(0, 128) * GiB) for u in users}
    return Snapshot(
        group="default",
        pending=sessions,
        agents=agents,
        allocations=allocations,
        running={u: rng.randint(0, 8) for u in users},
        limits={},
        memo={},
        now=start + timedelta(days=1),
    )


def schedulers() -> dict[str, Scheduler]:
    """The built-ins as the daemon builds them (its plugin manager, the entry points)."""
    config = load_config(state_dir=Path(tempfile.gettempdir()) / "vfd-sched-bench", env={})
    plugins = build_manager(config)
    out = {name: plugins.scheduler(name, {}) for name in ("fifo", "lifo", "drf")}
    out["fifo past hol"] = plugins.scheduler("fifo", {"hol_rounds": 0})
    out["drf backfill"] = plugins.scheduler("drf", {"backfill": True})
    return out


def time_round(scheduler: Scheduler, snapshot: Snapshot, repeat: int) -> tuple[float, int]:
    best = float("inf")
    placed = 0
    for _ in range(repeat):
        began = time.perf_counter()
        decision = scheduler.decide(snapshot)
        best = min(best, time.perf_counter() - began)
        placed = len(decision.place)
        assert len(decision.place) + len(decision.waiting) == len(snapshot.pending)
    return best, placed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    figures: dict[str, dict[int, dict[str, float]]] = {}
    built = schedulers()
    for size in sizes:
        snapshot = make_snapshot(size)
        for name, scheduler in built.items():
            seconds, placed = time_round(scheduler, snapshot, args.repeat)
            figures.setdefault(name, {})[size] = {"seconds": seconds, "placed": placed}
    print(f"one round: {USERS} users, {AGENTS} agents; best of {args.repeat}")
    header = f"{'scheduler':<18}" + "".join(f"{n:>16,}" for n in sizes)
    print(header)
    for name, by_size in figures.items():
        cells = "".join(
            f"{by_size[n]['seconds'] * 1000:>9.1f} ms {int(by_size[n]['placed']):>4}" for n in sizes
        )
        print(f"{name:<18}{cells}")
    print("(each cell: the round's time and how many sessions it placed)")
    failed = []
    if 10_000 in sizes:
        failed = [n for n, f in figures.items() if f[10_000]["seconds"] >= TARGET]
        verdict = "all under" if not failed else "OVER for " + ", ".join(failed) + ":"
        print(f"10,000 pending: {verdict} the {TARGET} s target")
    for name, by_size in figures.items():
        steps = [
            f"x{by_size[b]['seconds'] / by_size[a]['seconds']:.1f} from {a:,} to {b:,}"
            for a, b in itertools.pairwise(sizes)
            if by_size[a]["seconds"] > 0
        ]
        if steps:
            print(f"growth {name}: " + ", ".join(steps))
    if args.json:
        print(json.dumps(figures, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
