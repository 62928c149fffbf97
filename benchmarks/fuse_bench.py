"""Throughput of the vfd FUSE mount against the native backing directory, in one run.

Targets on the same disk, each measured with the same phases:

* ``native``    — a folder's backing directory, no FUSE;
* ``quota-on``  — a folder's ``rw/`` view in a scope with (high, non-zero) limits;
* ``quota-off`` — a folder's ``rw/`` view in a scope with limits 0 (unlimited);
* ``c-ref``     — libfuse's own C example server ``passthrough_ll`` (single-threaded) over a
  plain directory: what a FUSE passthrough written in C reaches on this machine and kernel.
  Built from ``/usr/share/doc/libfuse3-dev/examples`` when that and a C compiler are present
  (``--no-c-ref`` skips it); it shows how much of a gap to native is FUSE itself.

Phases: sequential write and read of one file (1 MiB blocks; ``fio`` when installed, else
Python), creating N 4 KiB files, stat of each, listing a directory of M entries (names only,
and names + lstat like ``ls -l``), unlinking the N files. The page cache is dropped
(``echo 3 > /proc/sys/vm/drop_caches``) before every phase on every target when permitted;
the output says whether it was. Each figure is printed with its ratio to native, the target
ratio, and quota-on's cost over quota-off — in wall time, and in the server's CPU time per
operation (its process CPU-time clock, all threads), which is what quota
checking adds and which does not swing with the scheduling noise of a small machine.

``--fast-path both`` adds a target ``fast-off``: a second mountd with its low-level fast path
off (``fuse.fast_path = off``: pyfuse3's own loop and handlers only), over a folder with the
same limits as ``quota-on``, and prints what the fast path buys per phase (``quota-on`` over
``fast-off``). ``--fast-path off`` runs the one mountd with it off.

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
import timeit
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "fuse"))

from harness import MountdProcess  # noqa: E402

MiB = 1 << 20
BLOCK = MiB
DROP = Path("/proc/sys/vm/drop_caches")
C_REF_SOURCE = Path("/usr/share/doc/libfuse3-dev/examples/passthrough_ll.c")


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


def reserve_ns() -> tuple[float, float]:
    """Nanoseconds of one quota reservation (mountd's check before a create or a growing
    write), in a scope with limits and in one without: the only work quota-on adds."""
    from vfd.folders.quota import Limits, Usage
    from vfd.fuse.usage import ScopeUsage

    out = []
    for limits in (Limits(1 << 60, 1 << 60), Limits()):
        scope = ScopeUsage("local", "user:bench", limits, Usage(0, 0))
        n = 200_000
        best = min(timeit.repeat(lambda: scope.reserve(4096, 1), number=n, repeat=5))  # noqa: B023
        out.append(best / n * 1e9)
    return out[0], out[1]


def cpu_ns(pid: int) -> int:
    """Nanoseconds process ``pid`` has run on a CPU, all its threads (ended ones included):
    the process's CPU-time clock, ``(~pid << 3) | CPUCLOCK_SCHED`` (clock_getcpuclockid)."""
    return time.clock_gettime_ns((~pid << 3) | 2)


@dataclass
class Bench:
    size: int
    files: int
    list_files: int
    use_fio: bool
    drop_caches: bool
    notes: list[str] = field(default_factory=list)
    server: int | None = None
    """pid of the FUSE server of the target being measured (None for native)."""
    cpu: dict[str, float] = field(default_factory=dict)
    """Server CPU seconds of each phase of the current target."""

    def drop(self) -> None:
        """Write back dirty data and drop the page, dentry and inode caches (if permitted)."""
        os.sync()
        if self.drop_caches:
            DROP.write_text("3\n")

    def timed(self, key: str, fn: Callable[[], object]) -> float:
        self.drop()
        cpu = cpu_ns(self.server) if self.server else 0
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        if self.server:
            self.cpu[key] = (cpu_ns(self.server) - cpu) / 1e9
        return elapsed

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
        out = ""

        def run() -> None:
            nonlocal out
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout

        self.timed(f"seq_{rw}", run)
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

        return self.size / MiB / self.timed("seq_write", run)

    def _py_read(self, path: Path) -> float:
        buf = bytearray(BLOCK)

        def run() -> None:
            with open(path, "rb", buffering=0) as f:
                while f.readinto(buf):
                    pass

        return self.size / MiB / self.timed("seq_read", run)

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
            "create": self.files / self.timed("create", create),
            "stat": self.files / self.timed("stat", stat_all),
            "unlink": self.files / self.timed("unlink", unlink_all),
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

        out = {"list": self.timed("list", names), "list_stat": self.timed("list_stat", with_stat)}
        assert seen == [self.list_files, self.list_files], seen
        shutil.rmtree(d)
        return out

    def run(self, root: Path, server: int | None) -> dict[str, float]:
        """Every phase on ``root``; ``cpu_<phase>`` is the server's CPU microseconds per
        operation (per MiB for sequential I/O)."""
        self.server, self.cpu = server, {}
        out = {**self.seq(root), **self.meta(root), **self.listing(root)}
        mib = self.size / MiB
        entries = self.list_files
        per = {"seq_write": mib, "seq_read": mib, "list": entries, "list_stat": entries}
        for key, seconds in self.cpu.items():
            out[f"cpu_{key}"] = seconds * 1e6 / per.get(key, self.files)  # else small files
        return out


class CReference:
    """libfuse's ``passthrough_ll`` example, built and mounted over a directory of ours."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.binary = tmp / "passthrough_ll"
        self.source = tmp / "c-ref-source"
        self.mnt = tmp / "c-ref-mnt"
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> str | None:
        """None when it can be built, else why not."""
        if not C_REF_SOURCE.exists():
            return f"{C_REF_SOURCE} missing (apt-get install libfuse3-dev)"
        if shutil.which("cc") is None or shutil.which("pkg-config") is None:
            return "no C compiler or pkg-config"
        return None

    def start(self) -> Path:
        flags = subprocess.run(
            ["pkg-config", "--cflags", "--libs", "fuse3"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        work = self.tmp / "c-ref-build"
        work.mkdir()
        for name in ("passthrough_ll.c", "passthrough_helpers.h"):
            if (C_REF_SOURCE.parent / name).exists():
                shutil.copy(C_REF_SOURCE.parent / name, work / name)
        subprocess.run(
            ["cc", "-O2", "-o", str(self.binary), str(work / "passthrough_ll.c"), *flags],
            check=True,
            capture_output=True,
        )
        self.source.mkdir()
        self.mnt.mkdir()
        opts = f"source={self.source},allow_other"
        self.proc = subprocess.Popen(
            [str(self.binary), "-f", "-s", "-o", opts, str(self.mnt)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not os.path.ismount(self.mnt):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("passthrough_ll did not mount")
            time.sleep(0.05)
        return self.mnt

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self) -> None:
        if self.proc is None:
            return
        subprocess.run(["fusermount3", "-u", str(self.mnt)], check=False, capture_output=True)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def best(old: dict[str, float] | None, new: dict[str, float]) -> dict[str, float]:
    """Per metric, the better of two rounds (higher rate, shorter time)."""
    if old is None:
        return new
    pick = {m.key: (max if m.higher_is_better else min) for m in METRICS}
    return {k: pick.get(k, min)(old[k], new[k]) for k in new}


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
    cref = results.get("c-ref")
    print()
    head = f"{'phase':<30}{'native':>11}{'quota-on':>11}{'quota-off':>11}"
    head += f"{'c-ref':>11}" if cref else ""
    head += f"{'on/native':>10}{'off/native':>11}"
    head += f"{'c/native':>9}" if cref else ""
    head += f"{'target':>9}      {'on vs off: wall':>15}{'cpu':>11}"
    print(head)
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
        cpu_a, cpu_b = on.get(f"cpu_{m.key}"), off.get(f"cpu_{m.key}")
        cpu_cost = cpu_a / cpu_b - 1 if cpu_a and cpu_b else float("nan")
        line = f"{m.label + ' [' + m.unit + ']':<30}{n:>11.4g}{a:>11.4g}{b:>11.4g}"
        line += f"{cref[m.key]:>11.4g}" if cref else ""
        line += f"{ra:>10.3f}{rb:>11.3f}"
        line += f"{cref[m.key] / n:>9.3f}" if cref else ""
        line += f"{target:>9} {'ok' if ok else 'MISS':<4}{cost:>+10.1%}"
        cpu_flag = "ok" if cpu_cost <= QUOTA_COST_TARGET else "MISS"
        line += f"{cpu_cost:>+11.1%} {cpu_flag}"
        print(line)
    print()
    print("server CPU per operation, microseconds (per MiB for sequential I/O):")
    print(f"{'phase':<30}{'quota-on':>11}{'quota-off':>11}" + (f"{'c-ref':>11}" if cref else ""))
    for m in METRICS:
        key = f"cpu_{m.key}"
        line = f"{m.label:<30}{on.get(key, 0):>11.1f}{off.get(key, 0):>11.1f}"
        line += f"{cref.get(key, 0):>11.1f}" if cref else ""
        print(line)
    on_ns, off_ns = reserve_ns()
    extra = (on_ns - off_ns) / 1000  # microseconds per reservation
    print()
    print(
        f"quota check: {on_ns:.0f} ns per reservation with limits, {off_ns:.0f} ns without; "
        f"a create makes two (files, then bytes at its write): {2 * extra:+.3f} us, "
        f"{2 * extra / on['cpu_create']:+.3%} of quota-on's CPU per create; a growing write "
        f"one: {extra / on['cpu_seq_write']:+.4%} of its CPU per MiB"
        if "cpu_create" in on and "cpu_seq_write" in on
        else f"quota check: {on_ns:.0f} ns per reservation with limits, {off_ns:.0f} ns without"
    )
    print()
    print(
        "ratios: rates are fuse/native (higher is better); listing times are fuse/native "
        "(lower is better). 'on vs off' is how much more quota-on costs than quota-off, in "
        f"wall time and in mountd CPU time per operation (target <= {QUOTA_COST_TARGET:.0%}); "
        "'c-ref' is libfuse's C passthrough_ll on the same disk."
    )
    if "fast-off" in results:
        report_fast_path(on, results["fast-off"])
    for note in bench.notes:
        print(f"note: {note}")


def report_fast_path(fast: dict[str, float], slow: dict[str, float]) -> None:
    """What the fast path buys: ``quota-on`` (fast path as configured) over ``fast-off``."""
    print()
    print("fast path on (quota-on) vs off (fast-off): speed-up in wall time, and mountd CPU")
    print("per operation (per MiB for sequential I/O), microseconds")
    head = f"{'phase':<30}{'on':>11}{'off':>11}{'speed-up':>10}"
    print(head + f"{'cpu on':>10}{'cpu off':>10}{'cpu off/on':>12}")
    for m in METRICS:
        a, b = fast[m.key], slow[m.key]
        speed = a / b if m.higher_is_better else b / a
        cpu_a, cpu_b = fast.get(f"cpu_{m.key}", 0.0), slow.get(f"cpu_{m.key}", 0.0)
        cpu = cpu_b / cpu_a if cpu_a else float("nan")
        line = f"{m.label + ' [' + m.unit + ']':<30}{a:>11.4g}{b:>11.4g}{speed:>9.2f}x"
        print(line + f"{cpu_a:>10.1f}{cpu_b:>10.1f}{cpu:>11.2f}x")


def fast_path_note(mountd: MountdProcess) -> str:
    """Whether a running mountd's fast path is on (its ``health`` answer)."""
    fast = mountd.call("health")["fast_path"]
    libs = f"libfuse {fast['libfuse_version']}, pyfuse3 {fast['pyfuse3_version']}"
    return f"on ({libs})" if fast["on"] else f"off: {fast['reason']} ({libs})"


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
    parser.add_argument(
        "--poll",
        type=float,
        default=None,
        help="mountd's fuse.poll in seconds (default: vfd's default); 0 keeps polling out of "
        "the CPU figures, so that they show the work per request alone",
    )
    parser.add_argument(
        "--no-c-ref", action="store_true", help="do not build and measure libfuse's passthrough_ll"
    )
    parser.add_argument(
        "--fast-path",
        choices=("auto", "off", "both"),
        default="auto",
        help="mountd's fuse.fast_path (default auto); 'both' also measures a second mountd "
        "with it off (target fast-off) and prints the speed-up per phase",
    )
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
    options = {} if args.poll is None else {"poll": args.poll}
    off_env = {"VFD_FUSE_FAST_PATH": "off"}
    proc = MountdProcess(tmp, env=off_env if args.fast_path == "off" else None, **options)
    slow = MountdProcess(tmp / "fast-off", env=off_env, **options)
    if args.poll is not None:
        bench.notes.append(f"mountd run with fuse.poll = {args.poll:g} s")
    cref = CReference(tmp)
    why_not = "--no-c-ref given" if args.no_c_ref else CReference.available()
    if why_not:
        bench.notes.append(f"c-ref not measured: {why_not}")
    proc.start()
    try:
        high = 1 << 50
        assert proc.proc is not None
        mountd = proc.proc.pid
        bench.notes.append(f"mountd's fast path: {fast_path_note(proc)}")
        targets: dict[str, tuple[Path, int | None]] = {
            "native": (proc.new_folder(max_bytes=high, max_files=high).backing, None),
            "quota-on": (proc.new_folder(max_bytes=high, max_files=high).rw, mountd),
            "quota-off": (proc.new_folder().rw, mountd),
        }
        if args.fast_path == "both":
            slow.start()
            assert slow.proc is not None
            bench.notes.append(f"fast-off's mountd: {fast_path_note(slow)}")
            targets["fast-off"] = (
                slow.new_folder(max_bytes=high, max_files=high).rw,
                slow.proc.pid,
            )
        if not why_not:
            targets["c-ref"] = (cref.start(), cref.pid)
        results: dict[str, dict[str, float]] = {}
        for round_ in range(args.repeat):
            order = list(targets)
            if round_ % 2:  # whoever goes second inherits the first's just-freed inodes
                on, off = order.index("quota-on"), order.index("quota-off")
                order[on], order[off] = order[off], order[on]
            for name in order:
                root, server = targets[name]
                print(f"round {round_ + 1}/{args.repeat}: {name} in {root} ...", flush=True)
                results[name] = best(results.get(name), bench.run(root, server))
        report(bench, results)
        if args.json:
            print(json.dumps(results, indent=2))
    finally:
        cref.stop()
        if slow.proc is not None:
            slow.stop()
        proc.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
