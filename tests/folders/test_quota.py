"""Quota arithmetic and the parallel usage scan (``vfd.folders.quota``)."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

from vfd.folders import layout
from vfd.folders.quota import (
    FsStats,
    Limits,
    Usage,
    folder_roots,
    grows_past,
    quota_stats,
    scan_scope,
    scan_trees,
)


def test_quota_grows_past_checks_only_growth() -> None:
    """Reaching a limit is allowed, passing it is not; shrinking always passes, even above
    a lowered limit; 0 is unlimited."""
    limits = Limits(max_bytes=100, max_files=3)
    assert not grows_past(limits, 50, 1, 50, 2)
    assert grows_past(limits, 50, 1, 51, 0)
    assert grows_past(limits, 50, 3, 0, 1)
    assert not grows_past(limits, 500, 30, -10, -1)
    assert not grows_past(limits, 500, 30, 0, 0)
    assert not grows_past(Limits(), 10**15, 10**9, 10**12, 10**6)


def test_quota_stats_report_limit_as_size() -> None:
    """statfs numbers: the byte limit as the size and usage as used, capped by the host;
    the file limit as f_files; unlimited dimensions report the host."""
    host = FsStats(
        bsize=4096, blocks=10**6, bfree=5 * 10**5, bavail=4 * 10**5, files=10**6, ffree=9 * 10**5
    )
    s = quota_stats(Usage(4096 * 10 + 1, 5), Limits(4096 * 100, 50), host)
    assert (s.blocks, s.bfree, s.bavail) == (100, 89, 89)
    assert (s.files, s.ffree) == (50, 45)
    over = quota_stats(Usage(4096 * 200, 80), Limits(4096 * 100, 50), host)
    assert (over.bfree, over.ffree) == (0, 0)
    tight = quota_stats(Usage(0, 0), Limits(4096 * 10**7, 0), host)
    assert tight.bavail == host.bavail and tight.files == host.files
    assert quota_stats(Usage(1, 1), Limits(), host) == host


def _tree(root: Path) -> Usage:
    """A tree with every kind of inode, a hard link and a symlink out; its expected usage."""
    (root / "d" / "e").mkdir(parents=True)
    (root / "a").write_bytes(b"x" * 1000)
    (root / "d" / "b").write_bytes(b"y" * 24)
    os.link(root / "a", root / "d" / "e" / "a2")
    os.symlink("/etc", root / "out")
    os.mkfifo(root / "fifo")
    # a, b, d, e, out, fifo (a2 is the same inode as a)
    return Usage(1024, 6)


def test_quota_scan_counts_inodes_once_and_follows_no_link(tmp_path: Path) -> None:
    """Directories, symlinks and fifos count as files; only regular files add bytes; a hard
    link counts once; the symlink to /etc is not followed; the root is not counted."""
    root = tmp_path / "f"
    root.mkdir()
    expected = _tree(root)
    assert scan_trees([root]) == expected
    assert scan_trees([root], workers=1) == expected


def test_quota_scan_many_directories_in_parallel(tmp_path: Path) -> None:
    """Many directories walked by 8 threads sum exactly (no lost or double counts)."""
    root = tmp_path / "wide"
    expected_bytes = 0
    for i in range(60):
        d = root / f"d{i}" / "sub"
        d.mkdir(parents=True)
        for j in range(i % 7):
            (d / f"f{j}").write_bytes(b"z" * (i + j))
            expected_bytes += i + j
    files = sum(2 + i % 7 for i in range(60))
    assert scan_trees([root], workers=8) == Usage(expected_bytes, files)


def test_quota_scan_scope_covers_every_folder_of_the_scope(tmp_path: Path) -> None:
    """A scope's usage is every folder below its directory (attached or in the trash),
    found through the layout's fan-out levels; other scopes are not counted."""
    scope = layout.Scope("user", uuid.uuid4())
    other = layout.Scope("user", uuid.uuid4())
    paths = []
    for sc in (scope, scope, other):
        p = layout.folder_path(tmp_path, sc, uuid.uuid4())
        layout.create_folder_dir(p, uid=0, gid=0, project=False)
        (p / "data").write_bytes(b"q" * 10)
        paths.append(p)
    assert sorted(folder_roots(layout.scope_path(tmp_path, scope))) == sorted(paths[:2])
    assert scan_scope(layout.scope_path(tmp_path, scope)) == Usage(20, 2)
    assert scan_scope(tmp_path / "user-missing") == Usage()


def test_quota_scan_error_propagates() -> None:
    """A failure inside a worker thread is raised to the caller, not lost (checked in a
    child that drops to an unprivileged uid, for which a 0700 root-owned directory fails)."""
    root = Path(tempfile.mkdtemp(prefix="vfd-scan-"))
    root.chmod(0o755)
    (root / "a" / "locked").mkdir(parents=True)
    (root / "a" / "locked").chmod(0o700)
    try:
        code = _scan_as_nobody(root)
    finally:
        shutil.rmtree(root)
    assert code == 0, "the PermissionError in a worker did not reach the caller"


def _scan_as_nobody(root: Path) -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 3
        try:
            os.setgid(65534)
            os.setuid(65534)
            scan_trees([root], workers=4)
            code = 1
        except PermissionError:
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)
