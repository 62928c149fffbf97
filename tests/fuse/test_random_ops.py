"""A seeded random sequence of 2,000 file operations leaves quota counters without drift.

Create, write, truncate, link, unlink, rename (also between the two folders), mkdir, rmdir,
symlink, mkfifo and "unlink while open" are drawn at random over a small name space in two
folders of one scope with limits, so collisions (EEXIST, ENOTEMPTY, EISDIR...) and quota
refusals happen often. Every operation's result is only required to be a legal errno; the
end state is what is checked: the mount lists what the backing trees hold, mountd's usage
equals an independent recount, and a rescan finds no drift. Checkpoints along the way catch
drift early. Set VFD_RANDOM_SEED to replay a failure; the seed is in every failure message.
"""

from __future__ import annotations

import errno
import os
import random
import stat
from pathlib import Path

import pytest
from fsprobe import recount, wait_for

pytestmark = pytest.mark.fuse

OPS = 2000
CHECK_EVERY = 500
MiB = 1 << 20
LEGAL = {
    errno.ENOENT,
    errno.EEXIST,
    errno.ENOTEMPTY,
    errno.EISDIR,
    errno.ENOTDIR,
    errno.EDQUOT,
    errno.EXDEV,
    errno.EINVAL,
    errno.EPERM,
    errno.ELOOP,
    errno.ENXIO,  # a FIFO opened for writing without a reader (O_NONBLOCK)
    errno.EACCES,  # a create through a link that climbs to rw/ itself
}


def _seed() -> int:
    env = os.environ.get("VFD_RANDOM_SEED")
    return int(env) if env else random.SystemRandom().randrange(1 << 32)


class Runner:
    """Draws and applies operations; remembers the last ones for failure messages."""

    def __init__(self, seed: int, roots: list[Path]) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.roots = roots
        self.open_fds: list[int] = []
        self.log: list[str] = []

    def path(self) -> Path:
        rng = self.rng
        parts = [rng.choice(["a", "b", "c", "d1", "d2"])]
        if rng.random() < 0.5:
            parts.insert(0, rng.choice(["d1", "d2", "d1/d2"]))
        return rng.choice(self.roots).joinpath(*parts)

    def step(self, i: int) -> None:
        rng = self.rng
        p, q = self.path(), self.path()
        kind = rng.choice(
            [
                "create",
                "write",
                "write",
                "truncate",
                "link",
                "unlink",
                "rename",
                "rename",
                "mkdir",
                "mkdir",
                "rmdir",
                "symlink",
                "mkfifo",
                "orphan",
                "close",
            ]
        )
        self.log.append(f"{i}: {kind} {p} {q}")
        del self.log[:-20]
        try:
            self.apply(kind, p, q)
        except OSError as exc:
            if exc.errno not in LEGAL:
                raise AssertionError(
                    f"seed {self.seed}: op {self.log[-1]} failed with "
                    f"{errno.errorcode.get(exc.errno or 0)}: {exc}\nlast ops:\n"
                    + "\n".join(self.log)
                ) from exc

    def apply(self, kind: str, p: Path, q: Path) -> None:
        rng = self.rng
        if kind == "create":
            os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        elif kind == "write":
            fd = os.open(p, os.O_CREAT | os.O_WRONLY | os.O_NONBLOCK, 0o644)
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    return
                os.pwrite(fd, b"r" * rng.randint(1, 256 * 1024), rng.randint(0, 512 * 1024))
            finally:
                os.close(fd)
        elif kind == "truncate":
            os.truncate(p, rng.randint(0, 768 * 1024))
        elif kind == "link":
            os.link(p, q, follow_symlinks=False)
        elif kind == "unlink":
            os.unlink(p)
        elif kind == "rename":
            os.rename(p, q)
        elif kind == "mkdir":
            os.mkdir(p)
        elif kind == "rmdir":
            os.rmdir(p)
        elif kind == "symlink":
            os.symlink(rng.choice(["a", "../b", "/etc", "d1/c"]), p)
        elif kind == "mkfifo":
            os.mkfifo(p)
        elif kind == "orphan":
            fd = os.open(p, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK)
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                return
            self.open_fds.append(fd)
            os.unlink(p)
            os.write(fd, b"o" * rng.randint(1, 100_000))
        elif kind == "close" and self.open_fds:
            os.close(self.open_fds.pop(rng.randrange(len(self.open_fds))))

    def close_all(self) -> None:
        while self.open_fds:
            os.close(self.open_fds.pop())


def _listing(root: Path) -> dict[str, tuple[int, int]]:
    """Relative path -> (type bits, size) of every entry below root, links not followed."""
    out: dict[str, tuple[int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            size = st.st_size if stat.S_ISREG(st.st_mode) else 0
            out[os.path.relpath(path, root)] = (stat.S_IFMT(st.st_mode), size)
    return out


def _check(mountd, folders, seed: int, when: str) -> None:  # type: ignore[no-untyped-def]
    want = recount(*(f.backing for f in folders))
    host = mountd.config.default_host

    def current() -> tuple[int, int]:
        u = mountd.call("usage", host=host, scope=folders[0].scope)
        return u["used_bytes"], u["used_files"]

    wait_for(
        lambda: current() == want,
        timeout=10,
        what=lambda: f"seed {seed}, {when}: usage {current()} to equal the recount {want}",
    )
    limits = mountd.call("usage", host=host, scope=folders[0].scope)
    assert want[0] <= limits["max_bytes"], f"seed {seed}, {when}: bytes past the limit {want}"
    assert want[1] <= limits["max_files"], f"seed {seed}, {when}: files past the limit {want}"


def test_random_operation_sequence_leaves_no_usage_drift(mountd) -> None:
    """2,000 random operations in two folders of one limited scope; then views, counters,
    recount and rescan all agree."""
    seed = _seed()
    print(f"VFD_RANDOM_SEED={seed}")
    a = mountd.new_folder(max_bytes=6 * MiB, max_files=60)
    b = mountd.new_folder(scope=a.scope)
    runner = Runner(seed, [a.rw, b.rw])
    try:
        for i in range(OPS):
            runner.step(i)
            if i % CHECK_EVERY == CHECK_EVERY - 1 and not runner.open_fds:
                _check(mountd, [a, b], seed, f"after op {i}")
    finally:
        runner.close_all()
    _check(mountd, [a, b], seed, "at the end")
    for f in (a, b):
        assert _listing(f.rw) == _listing(f.backing), f"seed {seed}: rw/ differs from disk"
        assert _listing(f.ro) == _listing(f.backing), f"seed {seed}: ro/ differs from disk"
    result = mountd.call("rescan", host=mountd.config.default_host, scope=a.scope)
    (entry,) = result["scopes"]
    assert entry["before"] == entry["after"], f"seed {seed}: rescan found drift {entry}"
    assert (entry["after"]["bytes"], entry["after"]["files"]) == recount(a.backing, b.backing)


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(5))
def test_random_operation_sequence_more_seeds(mountd, round_: int) -> None:
    """The same check with five more seeds (marked slow)."""
    test_random_operation_sequence_leaves_no_usage_drift(mountd)
