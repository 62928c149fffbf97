"""``vfd.folders.copytree``: what a clone copies, how it charges, and that it stays inside."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from vfd.folders.copytree import Progress, copy_tree
from vfd.folders.quota import Usage, scan_trees

UID, GID = 4242, 4343


class Ledger:
    """Charges as mountd's counters would take them, with an optional byte limit."""

    def __init__(self, max_bytes: int = 0) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.files = 0

    def charge(self, nbytes: int, files: int) -> None:
        if nbytes > 0 and self.max_bytes and self.bytes + nbytes > self.max_bytes:
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
        self.bytes += nbytes
        self.files += files


@contextlib.contextmanager
def fds(*paths: Path) -> Iterator[list[int]]:
    opened = [os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW) for p in paths]
    try:
        yield opened
    finally:
        for fd in opened:
            os.close(fd)


def make_source(root: Path, outside: Path) -> None:
    (root / "a" / "b" / "c").mkdir(parents=True)
    (root / "a" / "b" / "c" / "deep.txt").write_text("deep\n")
    (root / "top.txt").write_bytes(b"top" * 1000)
    os.chmod(root / "top.txt", 0o640)
    (root / "exec.sh").write_text("#!/bin/sh\n")
    os.chmod(root / "exec.sh", 0o755)
    os.chmod(root / "a" / "b", 0o750)
    (root / "ro-dir").mkdir()
    (root / "ro-dir" / "inside").write_text("x")
    os.chmod(root / "ro-dir", 0o555)
    os.symlink("top.txt", root / "link-in")
    os.symlink(str(outside), root / "link-out")
    os.symlink(str(outside), root / "a" / "dir-link-out")
    os.link(root / "top.txt", root / "a" / "hard")
    os.mkfifo(root / "fifo", 0o620)
    with open(root / "sparse", "wb") as f:
        f.seek(50 << 20)
        f.write(b"end")
    os.setxattr(root / "top.txt", "user.note", b"hello")


def test_copytree_copies_everything_and_charges_a_rescan(tmp_path: Path) -> None:
    src, dst, outside = tmp_path / "src", tmp_path / "dst", tmp_path / "outside"
    src.mkdir()
    dst.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("must not be copied")
    make_source(src, outside)
    ledger, progress = Ledger(), Progress()
    with fds(src, dst) as (s, d):
        copy_tree(
            s, d, uid=UID, gid=GID, charge=ledger.charge, check=lambda: None, progress=progress
        )
    assert Usage(ledger.bytes, ledger.files) == scan_trees([dst]) == scan_trees([src])
    assert (progress.bytes, progress.files) == (ledger.bytes, ledger.files)
    assert (dst / "a" / "b" / "c" / "deep.txt").read_text() == "deep\n"
    assert (dst / "top.txt").read_bytes() == b"top" * 1000
    assert stat.S_IMODE((dst / "top.txt").stat().st_mode) == 0o640
    assert stat.S_IMODE((dst / "exec.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((dst / "a" / "b").stat().st_mode) == 0o750
    assert stat.S_IMODE((dst / "ro-dir").stat().st_mode) == 0o555
    assert (dst / "ro-dir" / "inside").read_text() == "x"
    assert os.readlink(dst / "link-in") == "top.txt"
    assert os.readlink(dst / "link-out") == str(outside)
    assert os.readlink(dst / "a" / "dir-link-out") == str(outside)
    assert not any(p.name == "secret" for p in dst.rglob("*"))
    assert (dst / "a" / "hard").stat().st_ino == (dst / "top.txt").stat().st_ino
    assert (dst / "top.txt").stat().st_nlink == 2
    assert stat.S_ISFIFO((dst / "fifo").lstat().st_mode)
    assert os.getxattr(dst / "top.txt", "user.note") == b"hello"
    sparse = (dst / "sparse").stat()
    assert sparse.st_size == (50 << 20) + 3
    assert sparse.st_blocks * 512 < 1 << 20  # the hole stayed a hole
    with open(dst / "sparse", "rb") as f:
        f.seek(50 << 20)
        assert f.read() == b"end"
    for path in [*dst.rglob("*")]:
        st = path.lstat()
        assert (st.st_uid, st.st_gid) == (UID, GID), path
        if not stat.S_ISDIR(st.st_mode):
            assert st.st_mtime_ns == (src / path.relative_to(dst)).lstat().st_mtime_ns, path


def test_copytree_quota_refusal_keeps_the_ledger_exact(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    for i in range(5):
        (src / f"f{i}").write_bytes(b"z" * 10_000)
    ledger = Ledger(max_bytes=25_000)
    with fds(src, dst) as (s, d), pytest.raises(OSError) as exc:
        copy_tree(
            s, d, uid=UID, gid=GID, charge=ledger.charge, check=lambda: None, progress=Progress()
        )
    assert exc.value.errno == errno.EDQUOT
    assert Usage(ledger.bytes, ledger.files) == scan_trees([dst])
    assert ledger.bytes <= 25_000


def test_copytree_stops_when_checked(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    for i in range(20):
        (src / f"f{i:02}").write_text(str(i))
    calls = 0

    class Stop(Exception):
        pass

    def check() -> None:
        nonlocal calls
        calls += 1
        if calls > 5:
            raise Stop

    ledger = Ledger()
    with fds(src, dst) as (s, d), pytest.raises(Stop):
        copy_tree(s, d, uid=UID, gid=GID, charge=ledger.charge, check=check, progress=Progress())
    copied = sorted(p.name for p in dst.iterdir())
    assert 0 < len(copied) < 20 and copied == [f"f{i:02}" for i in range(len(copied))]
    assert Usage(ledger.bytes, ledger.files) == scan_trees([dst])


def test_copytree_falls_back_to_reads_and_writes_across_file_systems(tmp_path: Path) -> None:
    """tmpfs -> the test's disk: no reflink, no copy_file_range across file systems (EXDEV)
    on current kernels; the data arrives all the same, holes kept."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on a file system of its own")
    with tempfile.TemporaryDirectory(dir=shm) as scratch:
        src, dst = Path(scratch), tmp_path / "dst"
        dst.mkdir()
        data = os.urandom(3 << 20)
        (src / "data").write_bytes(data)
        with open(src / "sparse", "wb") as f:
            f.seek(8 << 20)
            f.write(b"tail")
        ledger, progress = Ledger(), Progress()
        with fds(src, dst) as (s, d):
            copy_tree(
                s, d, uid=UID, gid=GID, charge=ledger.charge, check=lambda: None, progress=progress
            )
        assert (dst / "data").read_bytes() == data
        assert (dst / "sparse").stat().st_size == (8 << 20) + 4
        assert (dst / "sparse").stat().st_blocks * 512 < 1 << 20
        assert "reflink" not in progress.methods, progress.methods
        assert Usage(ledger.bytes, ledger.files) == scan_trees([dst]) == scan_trees([src])
