"""Throughput of the vfd FUSE mount against the native backing directory, in one run.

Three targets on the same disk, each measured with the same phases:

* ``native``    — a folder's backing directory, no FUSE;
* ``quota-on``  — a folder's ``rw/`` view in a scope with (high, non-zero) limits;
* ``quota-off`` — a folder's ``rw/`` view in a scope with limits 0 (unlimited).

Phases: sequential write and read of one file (1 MiB blocks; ``fio`` when installed, else
Python), creating N 4 KiB files, stat of each, listing a directory of M entries (names only,
and names + lstat like ``ls -l``), unlinking the N files. The page cache is dropped
(``echo 3 > /proc/sys/vm/drop_caches``) before every phase on every target when permitted;
the output says whether it was. Each figure is printed with its ratio to native, the target
ratio, and quota-on's cost over quota-off.

Usage: ``python benchmarks/fuse_bench.py [--size 1G] [--files 5000] [--list-files 10000]``.
It starts and stops its own mountd (the test harness's ``MountdProcess``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "fuse"))

from harness import MountdProcess  # noqa: E402

MiB = 1 << 20
BLOCK = MiB
DROP = Path("/proc/sys/vm/drop_caches")


@dataclass(frozen=True)
class Metric:
    """One figure: how to read it and what ratio to native it should reach."""

    key: str
    label: str
    unit: str
    higher_is_better: bool
    target: float
    """For rates: minimum fuse/native ratio; for times: maximum fuse/native ratio."""


METRICS = [
    Metric("seq_write", "sequential write", "MiB/s", True, 0.8),
    Metric("seq_read", "sequential read", "MiB/s", True, 0.6),
    Metric("create", "create 4 KiB files", "files/s", True, 0.25),
    Metric("stat", "stat each file", "stats/s", True, 0.2),
    Metric("list", "list directory (names)", "s", False, 5.0),
    Metric("list_stat", "list directory + lstat", "s", False, 5.0),
    Metric("unlink", "unlink files", "files/s", True, 0.15),
]
QUOTA_COST_TARGET = 0.05


@dataclass
class Bench:
    size: int
    files: int
    list_files: int
    use_fio: bool
    drop_caches: bool
    notes: list[str] = field(default_factory=list)

    def drop(self) -> None:
        """Write back dirty data and drop the page, dentry and inode caches (if permitted)."""
        os.sync()
        if self.drop_caches:
            DROP.write_text("3\n")

    def timed(self, fn: Callable[[], object]) -> float:
        self.drop()
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    # -- sequential I/O ------------------------------------------------------------------

    def _fio(self, path: Path, rw: str) -> float:
        """MiB/s of one fio job (psync, 1 MiB blocks; writes end with fsync)."""
        cmd = [
            "fio",
            f"--name={rw}",
            f"--filename={path}",
            f"--rw={rw}",
            f"--bs={BLOCK}",
            f"--size={self.size}",
            "--ioengine=psync",
            "--fallocate=none",
            "--output-format=json",
        ]
        if rw == "write":
            cmd.append("--end_fsync=1")
        self.drop()
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        job = json.loads(out[out.index("{") :])["jobs"][0][rw]
        return float(job["bw_bytes"]) / MiB

    def _py_write(self, path: Path) -> float:
        buf = b"\xa5" * BLOCK

        def run() -> None:
            fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
            try:
                for _ in range(self.size // BLOCK):
                    os.write(fd, buf)
                os.fsync(fd)
            finally:
                os.close(fd)

        return self.size / MiB / self.timed(run)

    def _py_read(self, path: Path) -> float:
        buf = bytearray(BLOCK)

        def run() -> None:
            with open(path, "rb", buffering=0) as f:
                while f.readinto(buf):
                    pass

        return self.size / MiB / self.timed(run)

    def seq(self, root: Path) -> dict[str, float]:
        path = root / "seqfile"
        if self.use_fio:
            w, r = self._fio(path, "write"), self._fio(path, "read")
        else:
            w, r = self._py_write(path), self._py_read(path)
        path.unlink()
        return {"seq_write": w, "seq_read": r}

    # -- metadata ------------------------------------------------------------------------

    def meta(self, root: Path) -> dict[str, float]:
        d = root / "small"
        d.mkdir()
        names = [str(d / f"f{i:06d}") for i in range(self.files)]
        data = b"\x5a" * 4096

        def create() -> None:
            for name in names:
                fd = os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                os.write(fd, data)
                os.close(fd)

        def stat_all() -> None:
            for name in names:
                os.stat(name)

        def unlink_all() -> None:
            for name in names:
                os.unlink(name)

        out = {
            "create": self.files / self.timed(create),
            "stat": self.files / self.timed(stat_all),
            "unlink": self.files / self.timed(unlink_all),
        }
        d.rmdir()
        return out

    def listing(self, root: Path) -> dict[str, float]:
        d = root / "listing"
        d.mkdir()
        for i in range(self.list_files):
            os.close(os.open(d / f"entry-{i:06d}", os.O_CREAT | os.O_WRONLY, 0o644))
        seen: list[int] = []

        def names() -> None:
            seen.append(len(os.listdir(d)))

        def with_stat() -> None:
            with os.scandir(d) as it:
                seen.append(sum(1 for e in it if e.stat(follow_symlinks=False).st_size >= 0))

        out = {"list": self.timed(names), "list_stat": self.timed(with_stat)}
        assert seen == [self.list_files, self.list_files], seen
        shutil.rmtree(d)
        return out

    def run(self, root: Path) -> dict[str, float]:
        return {**self.seq(root), **self.meta(root), **self.listing(root)}


def best(old: dict[str, float] | None, new: dict[str, float]) -> dict[str, float]:
    """Per metric, the better of two rounds (higher rate, shorter time)."""
    if old is None:
        return new
    pick = {m.key: (max if m.higher_is_better else min) for m in METRICS}
    return {k: pick[k](old[k], new[k]) for k in new}


def parse_size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    text = text.strip().lower().removesuffix("ib").removesuffix("b")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def can_drop_caches() -> bool:
    try:
        DROP.write_text("3\n")
    except OSError:
        return False
    return True


def report(bench: Bench, results: dict[str, dict[str, float]]) -> None:
    native, on, off = results["native"], results["quota-on"], results["quota-off"]
    print()
    print(
        f"{'phase':<30}{'native':>12}{'quota-on':>12}{'quota-off':>12}"
        f"{'on/native':>11}{'off/native':>11}{'target':>9}{'on vs off':>11}"
    )
    for m in METRICS:
        n, a, b = native[m.key], on[m.key], off[m.key]
        ra, rb = a / n, b / n
        if m.higher_is_better:
            ok = ra >= m.target
            target = f">={m.target:g}"
            cost = b / a - 1  # how much slower quota-on is than quota-off
        else:
            ok = ra <= m.target
            target = f"<={m.target:g}x"
            cost = a / b - 1
        flag = "ok" if ok else "MISS"
        cost_flag = "ok" if cost <= QUOTA_COST_TARGET else "MISS"
        print(
            f"{m.label + ' [' + m.unit + ']':<30}{n:>12.4g}{a:>12.4g}{b:>12.4g}"
            f"{ra:>11.3f}{rb:>11.3f}{target:>9} {flag:<4}{cost:>+7.1%} {cost_flag}"
        )
    print()
    print(
        "ratios: rates are fuse/native (higher is better); listing times are fuse/native "
        "(lower is better). 'on vs off' is how much slower quota-on is than quota-off "
        f"(target <= {QUOTA_COST_TARGET:.0%})."
    )
    for note in bench.notes:
        print(f"note: {note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1G", help="sequential file size (default 1G)")
    parser.add_argument("--files", type=int, default=5000, help="small files (default 5000)")
    parser.add_argument(
        "--list-files", type=int, default=10000, help="entries of the listed directory"
    )
    parser.add_argument("--dir", default="/tmp", help="where the state directory goes")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds over the three targets, interleaved; the best figure of each is kept",
    )
    parser.add_argument("--python-io", action="store_true", help="do not use fio")
    parser.add_argument("--json", action="store_true", help="also print the raw figures as JSON")
    args = parser.parse_args(argv)

    size = parse_size(args.size)
    size -= size % BLOCK
    if size <= 0:
        parser.error("--size must be at least 1M")
    use_fio = not args.python_io and shutil.which("fio") is not None
    drop = can_drop_caches()
    bench = Bench(size, args.files, args.list_files, use_fio, drop)
    bench.notes.append(
        f"sequential I/O with {'fio (psync, --end_fsync=1 on writes)' if use_fio else 'Python'}"
        f", {size // MiB} MiB file, {BLOCK // 1024} KiB blocks"
    )
    bench.notes.append(
        "page cache dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before every phase"
        if drop
        else "page cache NOT dropped (no permission for /proc/sys/vm/drop_caches): "
        "reads may come from cache on every target"
    )

    if args.repeat > 1:
        bench.notes.append(f"best of {args.repeat} interleaved rounds per figure")
    load = os.getloadavg()
    bench.notes.append(
        f"{os.cpu_count()} CPUs, load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
        " (other work on the machine makes single figures noisy)"
    )

    tmp = Path(tempfile.mkdtemp(prefix="vfd-bench-", dir=args.dir))
    proc = MountdProcess(tmp)
    proc.start()
    try:
        high = 1 << 50
        targets = {
            "native": proc.new_folder(max_bytes=high, max_files=high).backing,
            "quota-on": proc.new_folder(max_bytes=high, max_files=high).rw,
            "quota-off": proc.new_folder().rw,
        }
        results: dict[str, dict[str, float]] = {}
        for round_ in range(args.repeat):
            for name, root in targets.items():
                print(f"round {round_ + 1}/{args.repeat}: {name} in {root} ...", flush=True)
                results[name] = best(results.get(name), bench.run(root))
        report(bench, results)
        if args.json:
            print(json.dumps(results, indent=2))
    finally:
        proc.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
