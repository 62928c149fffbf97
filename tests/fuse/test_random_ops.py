"""Seeded random operation sequences on the rw view: namespace operations leave quota
counters without drift, and data operations (fsx's discipline) never miscompare.

Namespace: create, write, truncate, link, unlink, rename (also between the two folders),
mkdir, rmdir, symlink, mkfifo and "unlink while open" are drawn at random over a small name
space in two folders of one scope with limits, so collisions (EEXIST, ENOTEMPTY, EISDIR...)
and quota refusals happen often. Every operation's result is only required to be a legal
errno; the end state is what is checked: the mount lists what the backing trees hold,
mountd's usage equals an independent recount, and a rescan finds no drift. Checkpoints along
the way catch drift early.

Data (as xfstests' fsx): three files in a folder whose byte limit they can pass, each with a
shadow copy of what it must contain. Writes, mapped writes, truncates, fallocate in every
mode, copy_file_range between the files and close/reopen are drawn at random; every read —
buffered, O_DIRECT and through mmap — is compared with the shadow, and every call's outcome
is predicted from the shadows and the limit (success, EDQUOT exactly when the growth would
pass it, EOPNOTSUPP for what the view does not offer, docs/storage.md). The counters must
equal the shadows' sizes at every checkpoint; at the end the backing files and the ro/ view
hold the shadows' bytes.

Set VFD_RANDOM_SEED to replay a failure; the seed is printed first and is in every failure
message, with the last operations.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import random
import stat
from pathlib import Path

import pytest
from fsprobe import recount, wait_for

from vfd.fuse import falloc

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


# -- data: fsx's discipline ----------------------------------------------------------------

DATA_OPS = 3000
DATA_CHECK_EVERY = 250
DATA_FILES = 3
MAXLEN = 512 * 1024
"""No operation makes a file longer than this."""
DATA_LIMIT = MAXLEN * DATA_FILES * 2 // 3
"""The scope's byte limit: the files together can pass it, so EDQUOT comes up often."""
BLOCK = 4096
DATA_KINDS = [
    *("write", "write", "mapwrite", "truncate", "fallocate", "fallocate", "copy", "reopen"),
    *("read", "read_direct", "read_mapped"),
]
FALLOC_MODES = {
    "allocate": falloc.ALLOCATE,
    "keep_size": falloc.KEEP_SIZE,
    "punch_hole": falloc.PUNCH_HOLE,
    "zero_range": falloc.ZERO_RANGE,
    "zero_range_keep_size": falloc.ZERO_RANGE_KEEP_SIZE,
    "collapse_range": falloc.COLLAPSE_RANGE,
    "insert_range": falloc.INSERT_RANGE,
}
_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


class Miscompare(AssertionError):
    """What the view returned differs from the shadow copy."""


class DataRunner:
    """fsx for the rw view: random data operations on a few files, each with a shadow copy
    of what it must contain; every read is compared with the shadow, and each call's outcome
    (success, EDQUOT, EOPNOTSUPP) is predicted from the shadows and the scope's limit."""

    def __init__(self, seed: int, root: Path, limit: int, fast_path: bool) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.limit = limit
        self.fast_path = fast_path
        self.paths = [root / f"f{i}" for i in range(DATA_FILES)]
        self.fds = [os.open(p, os.O_CREAT | os.O_RDWR, 0o644) for p in self.paths]
        self.shadow = [bytearray() for _ in self.paths]
        self.log: list[str] = []
        self.counts: dict[str, int] = {}

    def fail(self, what: str) -> Miscompare:
        return Miscompare(
            f"seed {self.seed} (replay with VFD_RANDOM_SEED={self.seed}): {what}\n"
            "last ops:\n" + "\n".join(self.log)
        )

    def used(self) -> int:
        return sum(len(s) for s in self.shadow)

    def fits(self, i: int, new_size: int) -> bool:
        """Whether file ``i`` may grow to ``new_size`` under the limit."""
        return self.used() + max(0, new_size - len(self.shadow[i])) <= self.limit

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []

    # -- drawing ---------------------------------------------------------------------------

    def step(self, n: int) -> None:
        rng = self.rng
        i = rng.randrange(DATA_FILES)
        kind = rng.choice(DATA_KINDS)
        self.counts[kind] = self.counts.get(kind, 0) + 1
        getattr(self, kind)(n, i)
        if n % 8 == 0:
            self.verify(i, whole=False)

    def note(self, n: int, text: str) -> None:
        self.log.append(f"{n}: {text}")
        del self.log[:-25]

    def expect(self, ok: bool, exc: OSError | None, refusals: set[int], what: str) -> None:
        """A call predicted to succeed (``ok``) must; one predicted to fail must fail with
        one of ``refusals``."""
        if ok and exc is not None:
            raise self.fail(f"{what} failed with {errno.errorcode.get(exc.errno or 0)}")
        if not ok and exc is None:
            raise self.fail(f"{what} succeeded; expected {sorted(refusals)}")
        if exc is not None and exc.errno not in refusals:
            raise self.fail(f"{what}: {errno.errorcode.get(exc.errno or 0)} not {refusals}")
        outcome = "ok" if exc is None else errno.errorcode.get(exc.errno or 0, "?")
        key = f"{what}:{outcome}"
        self.counts[key] = self.counts.get(key, 0) + 1

    # -- operations ------------------------------------------------------------------------

    def write(self, n: int, i: int) -> None:
        rng = self.rng
        off = rng.randrange(MAXLEN)
        data = rng.randbytes(rng.randint(1, min(64 * 1024, MAXLEN - off)))
        self.note(n, f"write f{i} off={off} len={len(data)} size={len(self.shadow[i])}")
        fits = self.fits(i, off + len(data))
        try:
            done = os.pwrite(self.fds[i], data, off)
        except OSError as exc:
            self.expect(fits, exc, {errno.EDQUOT}, "write")
            return
        if done < len(data) and fits:
            raise self.fail(f"short write {done} of {len(data)} within the limit")
        self.expect(True, None, set(), "write" if done == len(data) else "short write")
        self._store(i, off, data[:done])

    def mapwrite(self, n: int, i: int) -> None:
        size = len(self.shadow[i])
        if size == 0:
            return
        rng = self.rng
        off = rng.randrange(size)
        data = rng.randbytes(rng.randint(1, min(64 * 1024, size - off)))
        self.note(n, f"mapwrite f{i} off={off} len={len(data)} size={size}")
        self.verify(i, whole=False)  # mmap needs the size the shadow says
        with mmap.mmap(self.fds[i], size) as m:
            m[off : off + len(data)] = data
            m.flush()
        self._store(i, off, data)

    def truncate(self, n: int, i: int) -> None:
        size = self.rng.randrange(MAXLEN)
        self.note(n, f"truncate f{i} to {size} from {len(self.shadow[i])}")
        fits = self.fits(i, size)
        try:
            os.ftruncate(self.fds[i], size)
        except OSError as exc:
            self.expect(fits, exc, {errno.EDQUOT}, "truncate")
            return
        self.expect(fits, None, set(), "truncate")
        self._resize(i, size)

    def fallocate(self, n: int, i: int) -> None:
        rng = self.rng
        name = rng.choice(sorted(FALLOC_MODES))
        mode = FALLOC_MODES[name]
        size = len(self.shadow[i])
        if mode in (falloc.COLLAPSE_RANGE, falloc.INSERT_RANGE):
            off = rng.randrange(0, MAXLEN // BLOCK) * BLOCK
            length = rng.randint(1, 16) * BLOCK
        else:
            off = rng.randrange(MAXLEN)
            length = rng.randint(1, MAXLEN - off)
        self.note(n, f"fallocate f{i} {name} off={off} len={length} size={size}")
        ok, refusals, after = self._fallocate_model(i, mode, off, length)
        rc = _libc.fallocate(self.fds[i], mode, off, length)
        exc = OSError(ctypes.get_errno(), name) if rc else None
        self.expect(ok, exc, refusals, f"fallocate {name}")
        if exc is None:
            self.shadow[i] = after

    def _fallocate_model(
        self, i: int, mode: int, off: int, length: int
    ) -> tuple[bool, set[int], bytearray]:
        """(predicted to succeed, accepted errnos otherwise, the shadow after success)."""
        s = bytearray(self.shadow[i])
        size, end = len(s), off + length
        if not self.fast_path:
            return False, {errno.EOPNOTSUPP}, s  # the mount has no fallocate
        if mode in (falloc.COLLAPSE_RANGE, falloc.INSERT_RANGE):
            # the kernel's FUSE client does not forward them; were it to, ext4's rules:
            if mode == falloc.COLLAPSE_RANGE:
                after = s[:off] + s[end:]
            else:
                after = s[:off] + bytearray(length) + s[off:]
            return False, {errno.EOPNOTSUPP, errno.EINVAL, errno.EDQUOT}, after
        if mode in (falloc.KEEP_SIZE, falloc.ZERO_RANGE_KEEP_SIZE):
            if end > size:
                return False, {errno.EOPNOTSUPP}, s  # disk past the end: not offered
            if mode == falloc.ZERO_RANGE_KEEP_SIZE:
                s[off:end] = bytes(length)
            return True, set(), s
        if mode == falloc.PUNCH_HOLE:
            stop = min(end, size)
            if off < stop:
                s[off:stop] = bytes(stop - off)
            return True, set(), s
        if not self.fits(i, end):
            return False, {errno.EDQUOT}, s
        if mode == falloc.ZERO_RANGE:
            stop = min(end, size)
            if off < stop:
                s[off:stop] = bytes(stop - off)
        if end > size:
            s.extend(bytes(end - size))
        return True, set(), s

    def copy(self, n: int, i: int) -> None:
        rng = self.rng
        j = rng.choice([k for k in range(DATA_FILES) if k != i])
        src = self.shadow[j]
        off_in = rng.randrange(len(src) + 1)
        off_out = rng.randrange(MAXLEN)
        want = rng.randint(1, min(64 * 1024, MAXLEN - off_out))
        sizes = f"{len(src)},{len(self.shadow[i])}"
        self.note(n, f"copy f{j}@{off_in} -> f{i}@{off_out} len={want} sizes={sizes}")
        avail = min(want, len(src) - off_in)
        fits = avail <= 0 or self.fits(i, off_out + avail)
        try:
            done = os.copy_file_range(self.fds[j], self.fds[i], want, off_in, off_out)
        except OSError as exc:
            self.expect(fits, exc, {errno.EDQUOT}, "copy_file_range")
            return
        if done > max(avail, 0) or (fits and done != max(avail, 0)):
            raise self.fail(f"copy_file_range copied {done}, expected {max(avail, 0)}")
        self.expect(True, None, set(), "copy_file_range")
        self._store(i, off_out, bytes(src[off_in : off_in + done]))

    def reopen(self, n: int, i: int) -> None:
        """Close and open again: what close-to-open gives must be the shadow too."""
        self.note(n, f"reopen f{i}")
        os.close(self.fds[i])
        self.fds[i] = os.open(self.paths[i], os.O_RDWR)
        self.verify(i, whole=True)

    def read(self, n: int, i: int) -> None:
        off, length = self._range(i)
        self.note(n, f"read f{i} off={off} len={length}")
        self._compare(i, "read", off, os.pread(self.fds[i], length, off))

    def read_direct(self, n: int, i: int) -> None:
        size = len(self.shadow[i])
        off = self.rng.randrange(0, size // BLOCK + 1) * BLOCK
        length = self.rng.randint(1, 32) * BLOCK
        self.note(n, f"read_direct f{i} off={off} len={length}")
        self._compare(i, "O_DIRECT read", off, self._direct(i, off, length))

    def read_mapped(self, n: int, i: int) -> None:
        off, length = self._range(i)
        self.note(n, f"read_mapped f{i} off={off} len={length}")
        self._compare(i, "mapped read", off, self._mapped(i)[off : off + length])

    # -- reads and the shadow --------------------------------------------------------------

    def _range(self, i: int) -> tuple[int, int]:
        size = len(self.shadow[i])
        off = self.rng.randrange(size + 1)
        return off, self.rng.randint(1, 128 * 1024)

    def _direct(self, i: int, off: int, length: int) -> bytes:
        fd = os.open(self.paths[i], os.O_RDONLY | os.O_DIRECT)
        try:
            with mmap.mmap(-1, length) as buf:  # page-aligned, as O_DIRECT wants
                got = os.preadv(fd, [buf], off)
                return bytes(buf[:got])
        finally:
            os.close(fd)

    def _mapped(self, i: int) -> bytes:
        size = os.fstat(self.fds[i]).st_size
        if size == 0:
            return b""
        with mmap.mmap(self.fds[i], size, prot=mmap.PROT_READ) as m:
            return bytes(m)

    def _compare(self, i: int, how: str, off: int, got: bytes) -> None:
        want = bytes(self.shadow[i][off : off + len(got)])
        expected_len = max(0, min(len(got), len(self.shadow[i]) - off))
        if got != want or len(got) != expected_len:
            at = next((k for k, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), None)
            raise self.fail(
                f"{how} of f{i} at {off}: {len(got)} bytes, expected {expected_len}; "
                f"first difference at {None if at is None else off + at}"
            )

    def verify(self, i: int, *, whole: bool) -> None:
        size = len(self.shadow[i])
        if os.fstat(self.fds[i]).st_size != size:
            raise self.fail(f"f{i} has size {os.fstat(self.fds[i]).st_size}, expected {size}")
        if whole:
            self._compare(i, "read", 0, os.pread(self.fds[i], size + 1, 0))
            self._compare(i, "O_DIRECT read", 0, self._direct(i, 0, size // BLOCK * BLOCK + BLOCK))
            self._compare(i, "mapped read", 0, self._mapped(i))

    def _store(self, i: int, off: int, data: bytes) -> None:
        if not data:
            return  # nothing written: a file does not grow to the offset
        s = self.shadow[i]
        if off > len(s):
            s.extend(bytes(off - len(s)))
        s[off : off + len(data)] = data

    def _resize(self, i: int, size: int) -> None:
        s = self.shadow[i]
        if size < len(s):
            del s[size:]
        else:
            s.extend(bytes(size - len(s)))


def test_random_data_operations_match_shadow(mountd) -> None:  # type: ignore[no-untyped-def]
    """fsx on the rw view: 3,000 random writes, mapped writes, truncates, fallocates of
    every mode, copy_file_range calls and reopens on three files of a limited scope, every
    buffered, O_DIRECT and mapped read compared with a shadow copy, every call's outcome
    (EDQUOT included) predicted; usage equals the shadows' sizes throughout."""
    seed = _seed()
    print(f"VFD_RANDOM_SEED={seed}")
    folder = mountd.new_folder(max_bytes=DATA_LIMIT)
    fast_path = bool(mountd.call("health")["fast_path"]["on"])
    runner = DataRunner(seed, folder.rw, DATA_LIMIT, fast_path)
    try:
        for n in range(DATA_OPS):
            runner.step(n)
            if n % DATA_CHECK_EVERY == DATA_CHECK_EVERY - 1:
                for i in range(DATA_FILES):
                    runner.verify(i, whole=True)
                u = mountd.usage(folder)
                if (u["used_bytes"], u["used_files"]) != (runner.used(), DATA_FILES):
                    raise runner.fail(f"usage {u} after op {n}; shadows hold {runner.used()}")
    finally:
        runner.close()
    print(f"data ops: {sorted(runner.counts.items())}")
    for i, path in enumerate(runner.paths):
        for view in (folder.backing, folder.ro):
            if (view / path.name).read_bytes() != runner.shadow[i]:
                raise runner.fail(f"{view / path.name} differs from its shadow at the end")
    assert settled_usage(mountd, folder) == (runner.used(), DATA_FILES), f"seed {seed}"
    assert recount(folder.backing) == (runner.used(), DATA_FILES), f"seed {seed}"


def settled_usage(mountd, folder) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    u = mountd.usage(folder)
    return u["used_bytes"], u["used_files"]
