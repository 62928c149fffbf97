"""Many writers racing for one scope's last bytes and inodes never push it past its limit.

mountd serializes every quota check with the reservation that follows it, so two writers
racing for the last free bytes cannot both pass. Here threads of this process and forked
processes write, create, truncate and unlink in two folders of one scope at once until the
limit stops them; afterwards mountd's counters must be within the limit, equal a recount of
the backing trees, and (for pure writers) equal what write(2) reported as stored.
"""

from __future__ import annotations

import errno
import os
import random
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from fsprobe import fork_call, recount, wait_for

pytestmark = pytest.mark.fuse

MiB = 1 << 20
THREADS = 4
PROCESSES = 3


def usage(mountd, folder) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    u = mountd.call("usage", host=mountd.config.default_host, scope=folder.scope)
    return u["used_bytes"], u["used_files"]


def expect_usage(mountd, folder, want: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    """Wait until the scope's (bytes, files) are ``want`` (close releases asynchronously)."""
    wait_for(
        lambda: usage(mountd, folder) == want,
        timeout=10,
        what=lambda: f"usage {want} (the recount); mountd says {usage(mountd, folder)}",
    )


def _writer(path: str, seed: int) -> int:
    """Append random-sized chunks to ``path`` until EDQUOT; return the bytes stored."""
    rng = random.Random(seed)
    total = 0
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
    try:
        while True:
            try:
                total += os.write(fd, b"w" * rng.randint(1, 96 * 1024))
            except OSError as exc:
                if exc.errno != errno.EDQUOT:
                    raise
                return total
    finally:
        os.close(fd)


def _run_all(jobs: list[Callable[[], object]], forked: list[Callable[[], object]]) -> list:
    """Start forked jobs first (no threads are alive to be copied), then threads; collect."""
    children = [fork_call(job) for job in forked]
    results: list[object] = [None] * len(jobs)
    errors: list[BaseException] = []

    def run(i: int, job: Callable[[], object]) -> None:
        try:
            results[i] = job()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, j)) for i, j in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    out = [c.result(timeout=300) for c in children]
    assert not errors, errors
    return results + out


def test_concurrency_writers_never_pass_max_bytes(mountd) -> None:
    """4 threads and 3 processes append to their own files in two folders of a scope with
    a 16 MiB limit: usage stays within it, fills it to within one chunk, and equals both the
    recount and the sum of what the writers were told was stored."""
    a = mountd.new_folder(max_bytes=16 * MiB)
    b = mountd.new_folder(scope=a.scope)
    paths = [str((a if i % 2 else b).rw / f"w{i}") for i in range(THREADS + PROCESSES)]
    jobs = [lambda p=p, i=i: _writer(p, i) for i, p in enumerate(paths[:THREADS])]
    forked = [lambda p=p, i=i: _writer(p, 100 + i) for i, p in enumerate(paths[THREADS:])]
    stored = _run_all(jobs, forked)
    want = recount(a.backing, b.backing)
    assert want[0] == sum(stored), (want, stored)
    assert want[0] <= 16 * MiB
    assert want[0] > 16 * MiB - 96 * 1024, f"the scope was not filled: {want}"
    expect_usage(mountd, a, want)


def _creator(directory: str, prefix: str) -> int:
    """Create files (and now and then a directory) until EDQUOT; return how many."""
    made = 0
    while True:
        name = f"{directory}/{prefix}-{made}"
        try:
            if made % 7 == 3:
                os.mkdir(name)
            else:
                os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except OSError as exc:
            if exc.errno != errno.EDQUOT:
                raise
            return made
        made += 1


def test_concurrency_creators_never_pass_max_files(mountd) -> None:
    """Racing creators stop at exactly max_files inodes across the scope's folders."""
    a = mountd.new_folder(max_files=300)
    b = mountd.new_folder(scope=a.scope)
    dirs = [str(a.rw), str(b.rw)]
    jobs = [lambda i=i: _creator(dirs[i % 2], f"t{i}") for i in range(THREADS)]
    forked = [lambda i=i: _creator(dirs[i % 2], f"p{i}") for i in range(PROCESSES)]
    made = _run_all(jobs, forked)
    assert sum(made) == 300
    assert recount(a.backing, b.backing) == (0, 300)
    expect_usage(mountd, a, (0, 300))


def _churn(root: str, seed: int, ops: int) -> int:
    """Random appends, truncates, unlinks, links and renames on a few names; EDQUOT, ENOENT
    and EEXIST are expected collisions with the other workers."""
    rng = random.Random(seed)
    names = [f"{root}/n{i}" for i in range(8)]
    done = 0
    for _ in range(ops):
        p, q = rng.choice(names), rng.choice(names)
        op = rng.randrange(6)
        try:
            if op == 0:
                fd = os.open(p, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
                try:
                    os.write(fd, b"c" * rng.randint(1, 200_000))
                finally:
                    os.close(fd)
            elif op == 1:
                os.truncate(p, rng.randint(0, 300_000))
            elif op == 2:
                os.unlink(p)
            elif op == 3:
                os.link(p, q)
            elif op == 4:
                os.rename(p, q)
            else:
                fd = os.open(p, os.O_RDWR)
                try:
                    os.unlink(p)
                    os.write(fd, b"u" * rng.randint(1, 50_000))
                finally:
                    os.close(fd)
            done += 1
        except OSError as exc:
            if exc.errno not in (errno.EDQUOT, errno.ENOENT, errno.EEXIST):
                raise
    return done


def test_concurrency_mixed_churn_keeps_counters_exact(mountd) -> None:
    """Writers, truncaters, unlinkers, linkers and renamers racing in one scope (some on the
    same names, some on files they unlinked while open) leave counters equal to a recount,
    within the limit."""
    a = mountd.new_folder(max_bytes=4 * MiB, max_files=40)
    b = mountd.new_folder(scope=a.scope)
    roots = [str(a.rw), str(b.rw)]
    jobs = [lambda i=i: _churn(roots[i % 2], i, 400) for i in range(THREADS)]
    forked = [lambda i=i: _churn(roots[i % 2], 50 + i, 400) for i in range(PROCESSES)]
    done = _run_all(jobs, forked)
    assert sum(done) > 100, done
    want = recount(a.backing, b.backing)
    assert want[0] <= 4 * MiB and want[1] <= 40, want
    expect_usage(mountd, a, want)
    result = mountd.call("rescan", host=mountd.config.default_host, scope=a.scope)
    (entry,) = result["scopes"]
    assert entry["before"] == entry["after"] == {"bytes": want[0], "files": want[1]}


def test_concurrency_same_file_appenders_share_the_limit(mountd) -> None:
    """Writers appending to one shared file (O_APPEND) race on the same inode: the file
    never grows past the limit and the counters follow its real size."""
    folder = mountd.new_folder(max_bytes=8 * MiB)
    shared = str(folder.rw / "shared")
    Path(shared).touch()
    jobs = [lambda i=i: _writer(shared, i) for i in range(THREADS)]
    forked = [lambda i=i: _writer(shared, 10 + i) for i in range(2)]
    stored = _run_all(jobs, forked)
    size = os.stat(folder.backing / "shared").st_size
    assert size == sum(stored) <= 8 * MiB
    expect_usage(mountd, folder, (size, 1))
