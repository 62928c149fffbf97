"""Uploads and downloads through vfd against ``cp`` and ``tar | tar`` of the same data, in one run.

On a fresh node (``vfd up`` on a temporary state directory under ``--dir``, SQLite; one folder
``bench`` made by root) it times, over N interleaved rounds (the order rotates each round):

* one file of ``--size`` bytes (default 1 GiB):
  - upload: ``vfd vfolder upload`` (the CLI, from its start to its exit) and ``curl
    --unix-socket … -T FILE`` to ``PUT …/upload`` (the raw API), against ``cp FILE COPY && sync
    COPY`` — a *durable* copy, because vfd answers an upload only once its data is on disk
    (``fsync``); a bare ``cp`` would measure the page cache;
  - download: ``vfd vfolder download`` and ``curl -o COPY …/download``, against ``cp`` (neither
    side syncs: vfd does not fsync what it downloads);
  - with nginx installed (``apt-get install nginx-light``), the same curl commands against
    nginx on a unix socket (``GET`` with ``sendfile``; WebDAV ``PUT`` then ``sync``): the
    reference HTTP server, which says what any HTTP API with curl as its client can reach
    here against ``cp`` (a raw-API row that misses its target says "nginx too" when nginx
    misses it as well);
* one directory of ``--files`` files of 4 KiB (default 10,000):
  - upload: ``vfd vfolder upload DIR`` and ``tar -cf - DIR | curl -T - …/upload-archive``
    (the raw API: what the daemon's unpacking costs apart from the CLI; no target of its
    own), against ``tar -C DIR -cf - . | tar -C COPY -xf -`` followed by ``sync -f COPY``
    (the file system's data on disk, as vfd's answer means);
  - download: ``vfd vfolder download DIR`` and ``curl …/download?archive=true | tar -x``
    (the raw API), against ``tar | tar``.

All copies are made on the same disk (under ``--dir``, where the node's storage host lies too).
Outputs: a single file's copy is removed right after its timing (kept, two dozen copies of
1 GiB would crowd the page cache of the timings after them); the directories' copies are
removed only once all timings are done: on ext4, files made shortly after many were removed
cost far more (the inode allocator skips recently freed inodes), which would land on
whichever timing came next.
Page cache: the same for subject and reference alike. Before every timing, ``sync`` runs
(no earlier write is flushed inside it), the page cache is emptied (``drop_caches`` = 3, as
root: every timing starts from the same memory; in a virtual machine a write into pages that
were not touched for a while costs several times one into pages just freed, so timings swung
with what the runs before them had cached), then the source of the timing (the local file or
directory, or the folder's backing copy) is read once, and so are vfd's modules and the
interpreter's (``vfd vfolder list``) and the references' programs (``--version`` of ``cp``,
``tar``, ``sync``, ``curl``): *warm*, as for a command run a moment after the last.
After each timing the kernel's unused dentries and inodes are dropped (``drop_caches`` = 2),
so that mountd forgets them before the next.

Before every timing the benchmark also waits (up to 10 s) until the disk has been idle for
0.3 s: no dirty or in-writeback pages, no I/O in flight on a whole disk. What an earlier
timing or clean-up left in flight (a journal commit, ext4 freeing many inodes) would otherwise
land inside the next one.

Targets (ratio = reference time / vfd time, so 1.0 is as fast as the reference): single-file
CLI upload and download >= 0.8, raw API >= 0.9; directories >= 0.5. A ratio is *paired*: the
median over rounds of each round's reference time over its vfd time. Both ran within seconds
of each other, so a slow spell of a shared disk weighs on both, where a ratio of medians
compares timings from different spells. A single-file row that misses says "nginx too" when
nginx with curl missed the same target in the same run.

Then mountd's cost of cached inodes: ``--inodes`` empty files (default 100,000) are made in the
folder's backing directory (not timed), the kernel's dentry and inode caches are dropped, and
every file is ``stat``-ed through the folder's ``rw/`` view; mountd's open fds and ``VmRSS``
before and after, scaled to 100,000 inodes (errors counted, e.g. ``EMFILE`` when mountd runs out
of fds). Last, the CLI's start-up: medians of ``vfd --help`` and ``vfd vfolder list``.

Usage (as root, FUSE available): ``python benchmarks/transfer_bench.py [--size 1G] [--files
10000] [--runs 5] [--inodes 100000] [--dir /tmp] [--src OTHER/src] [--json]``;
``--quick`` is ``--size 64M --files 500 --runs 1 --inodes 2000 --cli-runs 3``. ``--src`` runs
the node and the CLI from another source tree (``git archive COMMIT src | tar -x -C /tmp/old``)
for a before/after pair on the same machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

VFD = str(Path(sys.executable).parent / "vfd")
FOLDER = "bench"
SMALL = 4096
TARGETS = {
    "file upload cli": 0.8,
    "file upload api": 0.9,
    "file download cli": 0.8,
    "file download api": 0.9,
    "dir upload cli": 0.5,
    "dir download cli": 0.5,
    "dir download api": 0.5,
}
"""The issue's targets, as ratios of the reference's time to vfd's."""


def parse_size(text: str) -> int:
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = text[-1] if text and text[-1] in "KMG" else ""
    return int(float(text[: len(text) - len(unit)]) * units[unit])


def shown_size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} bytes"


def sh(argv: list[str] | str, env: dict[str, str] | None = None) -> None:
    """Run a command (a string through the shell); a failure stops the benchmark."""
    done = subprocess.run(
        argv,
        shell=isinstance(argv, str),
        capture_output=True,
        env=env,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        shown = argv if isinstance(argv, str) else " ".join(argv)
        sys.exit(f"transfer_bench: {shown} exited {done.returncode}:\n{done.stderr.decode()}")


def forget_inodes() -> bool:
    """Drop the kernel's unused dentries and inodes (root only), so that mountd forgets the
    files of earlier timings: what one timing leaves cached must not weigh on the next (nor
    use up mountd's fds). Whether it could."""
    try:
        Path("/proc/sys/vm/drop_caches").write_text("2\n")
    except OSError:
        return False
    return True


def drop_page_cache() -> bool:
    """Empty the page cache (``drop_caches`` = 3, root only), so that every timing starts
    from the same memory: a virtual machine's memory pages back the cache, and a write into
    pages the guest has not touched for a while (or that its host reclaimed) costs several
    times one into pages just freed. Without it, reference and vfd timings alike swing with
    how much was cached before them. Whether it could."""
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


VFD_CODE = Path(__file__).resolve().parent.parent / "src" / "vfd"
TOOLS_WARM = "for t in cp tar sync curl; do command -v $t >/dev/null && $t --version; done"
"""Loads the references' programs (and curl's libraries) once: warm, as vfd's modules are."""


def _disk_busy() -> bool:
    """Whether dirty or in-writeback pages are left, or a block device has I/O in flight."""
    pending = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(("Dirty:", "Writeback:")):
            pending += int(line.split()[1])
    if pending > 4096:  # KiB
        return True
    for line in Path("/proc/diskstats").read_text().splitlines():
        fields = line.split()
        name = fields[2]
        if name.startswith(("loop", "ram", "zram")) or not Path("/sys/block", name).exists():
            continue  # whole disks only (vda, sda, nvme0n1): not partitions, loops, RAM disks
        if int(fields[11]) > 0:  # I/Os currently in progress
            return True
    return False


def settle(within: float = 10.0) -> float:
    """Wait (up to ``within`` seconds) until the disk has been idle for 0.3 s: what an earlier
    timing or its clean-up left in flight (a journal commit, the freeing of many inodes) must
    not land inside the next. The seconds waited."""
    start = time.perf_counter()
    quiet = 0
    while quiet < 6 and time.perf_counter() - start < within:
        if _disk_busy():
            quiet = 0
        else:
            quiet += 1
        time.sleep(0.05)
    return time.perf_counter() - start


def warm(path: Path) -> None:
    """Read ``path`` (a file, or every file under a directory) once: into the page cache."""
    if path.is_dir():
        sh(f"tar -C '{path}' -cf - . | cat > /dev/null")  # tar to /dev/null reads nothing
    else:
        sh(f"cat '{path}' > /dev/null")


class Node:
    """``vfd up`` on a temporary state directory, and the folder the transfers use."""

    def __init__(self, where: Path, src: Path | None) -> None:
        self.state = where / "state"
        self.state.mkdir()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("VFD_")}
        self.env["VFD_STATE_DIR"] = str(self.state)
        self.env["COLUMNS"] = "100"
        self.code = VFD_CODE  # the CLI's modules
        if src is not None:
            self.env["PYTHONPATH"] = str(src.absolute())
            self.code = src.absolute() / "vfd"
        # vfd's bytecode, as an installed vfd has it (pip compiles a wheel's modules): without
        # it, under PYTHONDONTWRITEBYTECODE, every CLI command compiles its modules again
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        compile_vfd = (
            "import compileall, os, vfd; "
            "compileall.compile_dir(os.path.dirname(vfd.__file__), quiet=1)"
        )
        sh([sys.executable, "-c", compile_vfd], self.env)
        self.log = open(where / "up.log", "wb")  # noqa: SIM115 - closed in stop()
        self.up = subprocess.Popen(
            [VFD, "up"], stdout=self.log, stderr=subprocess.STDOUT, env=self.env
        )
        self.where = where
        deadline = time.monotonic() + 90
        while True:
            probe = subprocess.run([VFD, "status", "--json"], capture_output=True, env=self.env)
            if probe.returncode == 0 and json.loads(probe.stdout).get("mountd"):
                break
            if self.up.poll() is not None or time.monotonic() > deadline:
                self.stop()
                sys.exit(f"transfer_bench: vfd up did not start:\n{self.up_log()}")
            time.sleep(0.2)
        from vfd.config import load_config

        self.socket = str(load_config(state_dir=self.state, env={}).api_socket)
        made = self.cli_json("vfolder", "create", FOLDER)
        self.view = Path(made["views"]["rw"])
        kind, owner = made["scope"].split(":")
        h = made["id"]
        self.backing = self.state / "hosts" / made["host"] / f"{kind}-{owner}"
        self.backing = self.backing / h[:2] / h[2:4] / h[4:]
        if not self.backing.is_dir():
            sys.exit(f"transfer_bench: the folder's backing directory is not {self.backing}")

    def up_log(self) -> str:
        return (self.where / "up.log").read_text(errors="replace")

    def cli(self, *args: str) -> None:
        sh([VFD, *args], self.env)

    def cli_json(self, *args: str) -> Any:
        done = subprocess.run([VFD, *args, "--json"], capture_output=True, env=self.env)
        if done.returncode != 0:
            sys.exit(f"transfer_bench: vfd {' '.join(args)}: {done.stderr.decode()}")
        return json.loads(done.stdout)

    def url(self, route: str, **params: str) -> str:
        return f"http://vfd/v1/vfolders/{FOLDER}/{route}?{urlencode(params)}"

    def remove(self, path: str) -> None:
        self.cli("vfolder", "rm", "-r", FOLDER, path)

    def mountd_pid(self) -> int:
        """The pid of ``python -m vfd.fuse``, the child of ``vfd up``."""
        children: list[str] = []
        for task in Path(f"/proc/{self.up.pid}/task").iterdir():
            children += (task / "children").read_text().split()
        for pid in children:
            if b"vfd.fuse" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                return int(pid)
        sys.exit(f"transfer_bench: no mountd among the children {children} of vfd up")

    def stop(self) -> None:
        self.up.send_signal(signal.SIGINT)
        try:
            self.up.wait(90)
        except subprocess.TimeoutExpired:
            self.up.kill()
            self.up.wait()
        self.log.close()


class Nginx:
    """nginx on a unix socket, the reference HTTP server of the single-file rows: ``GET`` of
    the folder's backing copy with ``sendfile``, ``PUT`` (WebDAV) into a directory on the same
    disk. It says how fast a plain, well-made HTTP server and curl move the file here, which
    bounds what any HTTP API can reach against ``cp``."""

    def __init__(self, work: Path, serve: Path) -> None:
        self.socket = str(work / "nginx.sock")
        self.put_dir = work / "nginx-put"
        self.put_dir.mkdir()
        (work / "nginx-tmp").mkdir()
        conf = work / "nginx.conf"
        conf.write_text(
            f"""daemon off;
master_process off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    sendfile on;
    client_max_body_size 0;
    client_body_temp_path {work}/nginx-tmp;
    server {{
        listen unix:{self.socket};
        location /get/ {{ alias {serve}/; }}
        location /put/ {{ alias {self.put_dir}/; dav_methods PUT; }}
    }}
}}
"""
        )
        self.proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(work)])
        deadline = time.monotonic() + 10
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = (work / "nginx-error.log").read_text(errors="replace")
                sys.exit(f"transfer_bench: nginx did not start:\n{log}")
            time.sleep(0.05)

    def url(self, path: str) -> str:
        return f"http://nginx/{path}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


class Bench:
    nginx: Nginx | None = None

    def __init__(self, node: Node, work: Path, size: int, files: int) -> None:
        self.node = node
        self.cleanups: list[Callable[[], None]] = []
        self.work = work
        self.big = work / "src" / "big.bin"
        self.small = work / "src" / "small"
        self.size = size
        self.files = files
        self.n = 0
        self.big.parent.mkdir()
        with open(self.big, "wb") as f:
            block = os.urandom(1 << 20)
            left = size
            while left:
                f.write(block[: min(left, len(block))])
                left -= min(left, len(block))
        self.small.mkdir()
        for i in range(files):
            (self.small / f"f{i:06d}").write_bytes(os.urandom(SMALL))
        # the copies the downloads read: uploaded once, untimed
        node.cli("vfolder", "upload", FOLDER, str(self.big), str(self.small))
        self.remote_big = node.backing / "big.bin"
        self.remote_small = node.backing / "small"
        sh(["sync"])
        forget_inodes()

    def fresh(self) -> Path:
        self.n += 1
        out = self.work / f"out{self.n}"
        out.mkdir()
        return out

    def timed(self, source: Path, run: Callable[[], None], cleanup: Callable[[], None]) -> float:
        sh(["sync"])
        drop_page_cache()
        warm(source)
        warm(self.node.code)  # the CLI's modules, as when it ran a moment ago
        self.node.cli("vfolder", "list")  # (and the interpreter's own)
        sh(f"({TOOLS_WARM}) >/dev/null; true")
        sh(["sync"])
        settle()
        start = time.perf_counter()
        run()
        took = time.perf_counter() - start
        if source.is_dir():  # many files: removed at the end (see "Outputs" in the docstring)
            self.cleanups.append(cleanup)
        else:
            cleanup()
        sh(["sync"])
        forget_inodes()
        return took

    def clean(self) -> None:
        """Remove every timing's output."""
        for cleanup in self.cleanups:
            cleanup()
        self.cleanups.clear()

    # -- one file
    def file_upload_ref(self) -> float:
        out = self.fresh()
        copy = out / "big.bin"
        return self.timed(
            self.big,
            lambda: sh(["sh", "-c", f"cp '{self.big}' '{copy}' && sync '{copy}'"]),
            lambda: shutil.rmtree(out),
        )

    def file_upload_cli(self) -> float:
        dest = f"up{secrets.token_hex(4)}"
        return self.timed(
            self.big,
            lambda: self.node.cli("vfolder", "upload", FOLDER, str(self.big), "--dest", dest),
            lambda: self.node.remove(dest),
        )

    def file_upload_api(self) -> float:
        name = f"up{secrets.token_hex(4)}.bin"
        url = self.node.url("upload", path=name, key=secrets.token_hex(16), size=str(self.size))
        curl = ["curl", "-sSf", "--unix-socket", self.node.socket, "-H", "Expect:"]
        return self.timed(
            self.big,
            lambda: sh([*curl, "-o", "/dev/null", "-T", str(self.big), url]),
            lambda: self.node.remove(name),
        )

    def file_upload_http(self) -> float:
        assert self.nginx is not None
        name = f"up{secrets.token_hex(4)}.bin"
        copy = self.nginx.put_dir / name
        curl = ["curl", "-sSf", "--unix-socket", self.nginx.socket, "-H", "Expect:"]
        put = [*curl, "-o", "/dev/null", "-T", str(self.big), self.nginx.url(f"put/{name}")]

        def run() -> None:
            sh(put)
            sh(["sync", str(copy)])

        return self.timed(self.big, run, copy.unlink)

    def file_download_http(self) -> float:
        assert self.nginx is not None
        out = self.fresh()
        curl = ["curl", "-sSf", "--unix-socket", self.nginx.socket]
        return self.timed(
            self.remote_big,
            lambda: sh([*curl, "-o", str(out / "big.bin"), self.nginx.url("get/big.bin")]),
            lambda: shutil.rmtree(out),
        )

    def file_download_ref(self) -> float:
        out = self.fresh()
        return self.timed(
            self.remote_big,
            lambda: sh(["cp", str(self.remote_big), str(out / "big.bin")]),
            lambda: shutil.rmtree(out),
        )

    def file_download_cli(self) -> float:
        out = self.fresh()
        return self.timed(
            self.remote_big,
            lambda: self.node.cli("vfolder", "download", FOLDER, "big.bin", "--dest", str(out)),
            lambda: shutil.rmtree(out),
        )

    def file_download_api(self) -> float:
        out = self.fresh()
        url = self.node.url("download", path="big.bin")
        curl = ["curl", "-sSf", "--unix-socket", self.node.socket]
        return self.timed(
            self.remote_big,
            lambda: sh([*curl, "-o", str(out / "big.bin"), url]),
            lambda: shutil.rmtree(out),
        )

    # -- a directory of small files
    def dir_upload_ref(self) -> float:
        out = self.fresh()
        cmd = f"tar -C '{self.small}' -cf - . | tar -C '{out}' -xf - && sync -f '{out}'"
        return self.timed(self.small, lambda: sh(cmd), lambda: shutil.rmtree(out))

    def dir_upload_cli(self) -> float:
        dest = f"up{secrets.token_hex(4)}"
        return self.timed(
            self.small,
            lambda: self.node.cli("vfolder", "upload", FOLDER, str(self.small), "--dest", dest),
            lambda: self.node.remove(dest),
        )

    def dir_upload_api(self) -> float:
        dest = f"api{secrets.token_hex(4)}"
        self.node.cli("vfolder", "mkdir", FOLDER, dest)  # untimed: the API unpacks into it
        url = self.node.url("upload-archive", path=dest, key=secrets.token_hex(16))
        cmd = (
            f"set -o pipefail; tar -C '{self.small.parent}' -cf - '{self.small.name}' "
            f"| curl -sSf -o /dev/null --unix-socket '{self.node.socket}' -T - '{url}'"
        )
        return self.timed(
            self.small, lambda: sh(["bash", "-c", cmd]), lambda: self.node.remove(dest)
        )

    def dir_download_ref(self) -> float:
        out = self.fresh()
        cmd = f"tar -C '{self.remote_small}' -cf - . | tar -C '{out}' -xf -"
        return self.timed(self.remote_small, lambda: sh(cmd), lambda: shutil.rmtree(out))

    def dir_download_cli(self) -> float:
        out = self.fresh()
        return self.timed(
            self.remote_small,
            lambda: self.node.cli("vfolder", "download", FOLDER, "small", "--dest", str(out)),
            lambda: shutil.rmtree(out),
        )

    def dir_download_api(self) -> float:
        out = self.fresh()
        url = self.node.url("download", path="small", archive="true")
        cmd = (
            f"set -o pipefail; curl -sSf --unix-socket '{self.node.socket}' '{url}' "
            f"| tar -C '{out}' -xf -"
        )
        return self.timed(
            self.remote_small, lambda: sh(["bash", "-c", cmd]), lambda: shutil.rmtree(out)
        )


ROWS: list[tuple[str, str, str]] = [
    # (group, name, label); the first of a group is its reference
    ("file upload", "ref", "cp + sync FILE"),
    ("file upload", "cli", "vfd vfolder upload"),
    ("file upload", "api", "curl PUT (raw API)"),
    ("file upload", "http", "curl PUT to nginx + sync"),
    ("file download", "ref", "cp"),
    ("file download", "cli", "vfd vfolder download"),
    ("file download", "api", "curl GET (raw API)"),
    ("file download", "http", "curl GET from nginx"),
    ("dir upload", "ref", "tar | tar + sync -f"),
    ("dir upload", "cli", "vfd vfolder upload"),
    ("dir upload", "api", "tar | curl PUT archive"),
    ("dir download", "ref", "tar | tar"),
    ("dir download", "cli", "vfd vfolder download"),
    ("dir download", "api", "curl archive | tar"),
]


def transfers(bench: Bench, runs: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {f"{g} {n}": [] for g, n, _ in ROWS}
    for group in ("file upload", "file download", "dir upload", "dir download"):
        names = [n for g, n, _ in ROWS if g == group and (n != "http" or bench.nginx)]
        for round_ in range(runs):
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                method = getattr(bench, f"{group.replace(' ', '_')}_{name}")
                times[f"{group} {name}"].append(method())
    bench.clean()
    return times


def mountd_figures(pid: int) -> tuple[int, int]:
    """mountd's open fds and its VmRSS in KiB."""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return fds, rss


def inode_cost(node: Node, count: int) -> dict[str, Any]:
    """mountd's fds and RSS before and after ``stat`` of ``count`` files through the mount."""
    where = node.backing / "inodes"
    where.mkdir()
    for i in range(count):
        os.close(os.open(where / f"i{i:07d}", os.O_CREAT | os.O_WRONLY, 0o644))
    sh(["sync"])
    dropped = forget_inodes()
    pid = node.mountd_pid()
    fds0, rss0 = mountd_figures(pid)
    errors: dict[str, int] = {}
    start = time.perf_counter()
    view = node.view / "inodes"
    for i in range(count):
        try:
            os.stat(view / f"i{i:07d}")
        except OSError as exc:
            name = os.strerror(exc.errno or 0)
            errors[name] = errors.get(name, 0) + 1
    took = time.perf_counter() - start
    if not Path(f"/proc/{pid}").exists() or node.mountd_pid() != pid:
        sys.exit(
            f"transfer_bench: mountd (pid {pid}) ended during the stat of {count} files "
            f"through the mount (errors: {errors})"
        )
    fds1, rss1 = mountd_figures(pid)
    scale = 100_000 / count
    return {
        "inodes": count,
        "caches_dropped": dropped,
        "stat_s": round(took, 3),
        "fds_before": fds0,
        "fds_after": fds1,
        "rss_kib_before": rss0,
        "rss_kib_after": rss1,
        "fds_per_100k": round((fds1 - fds0) * scale),
        "rss_mib_per_100k": round((rss1 - rss0) * scale / 1024, 1),
        "errors": errors,
    }


def startup(node: Node, runs: int) -> dict[str, float]:
    cases = {
        "vfd --help": [VFD, "--help"],
        "vfd vfolder list": [VFD, "vfolder", "list"],
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for argv in cases.values():
        sh(argv, node.env)  # warm
    for _ in range(runs):
        for name, argv in cases.items():
            start = time.perf_counter()
            sh(argv, node.env)
            times[name].append(time.perf_counter() - start)
    return {name: round(statistics.median(values), 4) for name, values in times.items()}


def paired(ref: list[float], subject: list[float]) -> float:
    """The median over rounds of reference time / subject time, each pair from one round (the
    two ran within seconds of each other, so a slow spell of the disk weighs on both)."""
    if len(ref) != len(subject):  # not from the same rounds: medians of each
        return statistics.median(ref) / statistics.median(subject)
    return statistics.median(r / t for r, t in zip(ref, subject, strict=True))


def report(
    times: dict[str, list[float]],
    inodes: dict[str, Any] | None,
    start: dict[str, float],
    args: argparse.Namespace,
) -> dict[str, Any]:
    med = {k: statistics.median(v) for k, v in times.items() if v}
    mb = args.size / 1e6
    print(
        f"\ntransfer_bench: one file of {shown_size(args.size)}, {args.files} files of 4 KiB, "
        f"{args.runs} round(s), under {args.dir}; load average {os.getloadavg()[0]:.2f}"
    )
    print(
        "before every timing: `sync`, the page cache emptied, then its source and vfd's "
        "modules read (warm, the same for both sides);\nuploads are durable on both sides "
        "(vfd answers after fsync; the references end with sync)"
    )
    ratios: dict[str, float] = {}
    verdicts: dict[str, bool] = {}
    shared: dict[str, bool] = {}
    current = ""
    for group, name, label in ROWS:
        key = f"{group} {name}"
        if group != current:
            current = group
            unit = "MB/s" if group.startswith("file") else "files/s"
            print(f"\n{group:<32} {'median s':>9} {'min s':>8} {unit:>9}  ratio  target")
        if key not in med:
            continue
        rate = (mb if group.startswith("file") else args.files) / med[key]
        line = f"  {label:<30} {med[key]:9.3f} {min(times[key]):8.3f} {rate:9.0f}"
        if name != "ref":
            ratio = paired(times[f"{group} ref"], times[key])
            ratios[key] = round(ratio, 3)
            target = TARGETS.get(key)
            line += f"  {ratio:5.2f}"
            if target is not None:
                verdicts[key] = ratio >= target
                line += f"  >= {target}: {'meets' if verdicts[key] else 'MISSES'}"
                http = f"{group} http"
                if not verdicts[key] and http in times:
                    shared[key] = paired(times[f"{group} ref"], times[http]) < target
                    if shared[key]:
                        line += " (nginx too)"
        print(line)
    missed = [key for key, ok in verdicts.items() if not ok]
    print(
        f"\ntargets: {len(verdicts) - len(missed)} of {len(verdicts)} met"
        + (
            f"; missed: {', '.join(missed)}"
            + (
                f" ({sum(shared.get(k, False) for k in missed)} of them missed by nginx too)"
                if shared
                else ""
            )
            if missed
            else ""
        )
    )
    if inodes is not None:
        errors = ", ".join(f"{n} x {e}" for e, n in inodes["errors"].items()) or "none"
        print(
            f"\nmountd after stat of {inodes['inodes']} files through the mount "
            f"({inodes['stat_s']:.1f} s; kernel caches dropped first: "
            f"{'yes' if inodes['caches_dropped'] else 'no (not root)'}):"
        )
        print(
            f"  fds   {inodes['fds_before']} -> {inodes['fds_after']}: "
            f"{inodes['fds_per_100k']} per 100,000 cached inodes"
        )
        print(
            f"  VmRSS {inodes['rss_kib_before'] / 1024:.1f} -> "
            f"{inodes['rss_kib_after'] / 1024:.1f} MiB: "
            f"{inodes['rss_mib_per_100k']} MiB per 100,000 cached inodes"
        )
        print(f"  stat errors: {errors}")
    print(f"\nCLI start-up (median of {args.cli_runs}, target <= 0.15 s):")
    for name, value in start.items():
        print(f"  {name:<20} {value:.3f} s")
    return {
        "size": args.size,
        "files": args.files,
        "runs": args.runs,
        "times": times,
        "ratios": ratios,
        "targets_met": verdicts,
        "missed_by_nginx_too": {k: v for k, v in shared.items() if v},
        "inodes": inodes,
        "startup_s": start,
    }


@contextlib.contextmanager
def workspace(where: Path) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="vfd-xfer-", dir=where))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=1 << 30, help="file size (1G)")
    parser.add_argument("--files", type=int, default=10_000, help="small files (10000)")
    parser.add_argument("--runs", type=int, default=5, help="rounds of each (5)")
    parser.add_argument("--inodes", type=int, default=100_000, help="inodes to cache (100000)")
    parser.add_argument("--cli-runs", type=int, default=10, help="CLI start-up rounds (10)")
    parser.add_argument("--dir", type=Path, default=Path("/tmp"), help="where to work (/tmp)")
    parser.add_argument("--src", type=Path, help="run vfd from this source tree's src/")
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    parser.add_argument("--json", action="store_true", help="also print the raw figures")
    args = parser.parse_args()
    if args.quick:
        args.size, args.files, args.runs = 64 << 20, 500, 1
        args.inodes, args.cli_runs = 2000, 3
    if os.geteuid() != 0:
        sys.exit("transfer_bench: run it as root (vfd up mounts FUSE)")
    if not Path("/dev/fuse").exists():
        sys.exit("transfer_bench: /dev/fuse is missing")
    for tool in ("curl", "tar", "sync"):
        if shutil.which(tool) is None:
            sys.exit(f"transfer_bench: {tool} is not installed")
    with workspace(args.dir) as work:
        node = Node(work, args.src)
        try:
            bench = Bench(node, work, args.size, args.files)
            if shutil.which("nginx"):
                bench.nginx = Nginx(work, node.backing)
            else:
                print(
                    "transfer_bench: no reference HTTP server rows: nginx is not installed "
                    "(apt-get install nginx-light)",
                    file=sys.stderr,
                )
            try:
                times = transfers(bench, args.runs)
            finally:
                if bench.nginx is not None:
                    bench.nginx.stop()
            inodes = inode_cost(node, args.inodes) if args.inodes else None
            start = startup(node, args.cli_runs)
        except BaseException:
            print(node.up_log()[-4000:], file=sys.stderr)
            raise
        finally:
            node.stop()
    raw = report(times, inodes, start, args)
    if args.json:
        print(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main()
