"""POSIX conformance of open(2) on the rw/ view: creation, flags, errors, permissions.

The pjdfstest ``open`` category, written for our mount: every case runs on a folder's rw/
view, as root and — where permission semantics matter — as an unprivileged uid in a forked
child (see ``fsprobe.run_as``). The backing directory is checked where the mount must
reproduce ownership on disk (files written for a user are owned by that user, not by root).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest
from fsprobe import OTHER, USER, make_dir, make_file, raises_errno, run_as, settle

pytestmark = pytest.mark.fuse

ROOT = (0, 0)


def _create(name: str, mode: int) -> tuple[int, int, int]:
    fd = os.open(name, os.O_CREAT | os.O_WRONLY, mode)
    os.close(fd)
    st = os.stat(name)
    return st.st_mode, st.st_uid, st.st_gid


@pytest.mark.parametrize(
    ("ids", "mode", "umask", "want"),
    [
        (ROOT, 0o666, 0o022, 0o644),
        (ROOT, 0o751, 0o027, 0o750),
        (USER, 0o666, 0o022, 0o644),
        (USER, 0o777, 0o000, 0o777),
        (USER, 0o4755, 0o022, 0o4755),
    ],
)
def test_open_create_sets_mode_and_owner(
    folder, ids: tuple[int, int], mode: int, umask: int, want: int
) -> None:
    """O_CREAT makes a regular file with ``mode & ~umask`` owned by the caller's uid/gid —
    through the mount and in the backing directory (files are never left owned by root)."""
    home = make_dir(folder.rw / "home", USER)
    got = run_as(ids, _create, "f", mode, cwd=home, umask=umask)
    assert got == (stat.S_IFREG | want, *ids)
    st = os.stat(folder.backing / "home" / "f")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (want, *ids)


@pytest.mark.parametrize("ids", [ROOT, USER])
def test_open_create_in_setgid_dir_takes_dir_group(folder, ids: tuple[int, int]) -> None:
    """In a setgid directory a new file gets the directory's group, not the caller's."""
    shared = make_dir(folder.rw / "shared", (0, 2000), 0o2777)
    got = run_as(ids, _create, "f", 0o644, cwd=shared)
    assert got == (stat.S_IFREG | 0o644, ids[0], 2000)
    assert os.stat(folder.backing / "shared" / "f").st_gid == 2000


def test_open_create_updates_parent_times(folder) -> None:
    """Creating an entry updates the parent's mtime and ctime; the new file's times are now."""
    parent = make_dir(folder.rw / "p")
    before = settle(parent)
    (parent / "f").touch()
    after = os.stat(parent)
    assert after.st_mtime_ns > before.st_mtime_ns
    assert after.st_ctime_ns > before.st_ctime_ns
    child = os.stat(parent / "f")
    assert child.st_mtime_ns >= after.st_mtime_ns - 1_000_000_000
    assert child.st_ctime_ns >= before.st_ctime_ns


def test_open_creat_on_existing_keeps_file_and_parent(folder) -> None:
    """O_CREAT without O_EXCL on an existing file opens it: mode, data and parent untouched."""
    parent = make_dir(folder.rw / "p")
    make_file(parent / "f", mode=0o600, data=b"kept")
    before = settle(parent)
    fd = os.open(parent / "f", os.O_CREAT | os.O_RDWR, 0o777)
    try:
        assert os.read(fd, 10) == b"kept"
    finally:
        os.close(fd)
    assert stat.S_IMODE(os.stat(parent / "f").st_mode) == 0o600
    after = os.stat(parent)
    assert (after.st_mtime_ns, after.st_ctime_ns) == (before.st_mtime_ns, before.st_ctime_ns)


@pytest.mark.parametrize("kind", ["file", "dir", "symlink", "dangling symlink", "fifo"])
def test_open_excl_refuses_any_existing_entry(folder, kind: str) -> None:
    """O_CREAT|O_EXCL fails with EEXIST on every existing entry, symlinks not followed."""
    path = folder.rw / "x"
    if kind == "file":
        path.touch()
    elif kind == "dir":
        path.mkdir()
    elif kind == "symlink":
        (folder.rw / "t").touch()
        path.symlink_to("t")
    elif kind == "dangling symlink":
        path.symlink_to("nowhere")
    else:
        os.mkfifo(path)
    with raises_errno(errno.EEXIST):
        os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    assert not (folder.rw / "nowhere").exists()


def test_open_creat_through_dangling_relative_symlink_creates_target(folder) -> None:
    """O_CREAT on a dangling link (no O_EXCL) creates the link's target next to it."""
    (folder.rw / "link").symlink_to("target")
    fd = os.open(folder.rw / "link", os.O_CREAT | os.O_WRONLY, 0o600)
    os.write(fd, b"via link")
    os.close(fd)
    assert (folder.rw / "target").read_bytes() == b"via link"
    assert os.path.islink(folder.backing / "link")
    assert (folder.backing / "target").read_bytes() == b"via link"


def test_open_trunc_empties_file_and_updates_times(folder) -> None:
    """O_TRUNC on a non-empty file sets its size to 0 and updates mtime and ctime."""
    f = make_file(folder.rw / "f", data=b"x" * 5000)
    before = settle(f)
    os.close(os.open(f, os.O_WRONLY | os.O_TRUNC))
    after = os.stat(f)
    assert after.st_size == 0
    assert after.st_mtime_ns > before.st_mtime_ns
    assert after.st_ctime_ns > before.st_ctime_ns
    assert os.stat(folder.backing / "f").st_size == 0


def test_open_nofollow_refuses_symlink_with_eloop(folder) -> None:
    """O_NOFOLLOW on a symlink fails with ELOOP; the target stays unopened."""
    make_file(folder.rw / "t", data=b"target")
    (folder.rw / "l").symlink_to("t")
    for flags in (os.O_RDONLY, os.O_WRONLY, os.O_RDWR | os.O_CREAT):
        with raises_errno(errno.ELOOP):
            os.open(folder.rw / "l", flags | os.O_NOFOLLOW, 0o644)
    fd = os.open(folder.rw / "l", os.O_RDONLY | os.O_NOFOLLOW | os.O_PATH)
    try:
        assert stat.S_ISLNK(os.fstat(fd).st_mode)
    finally:
        os.close(fd)


def test_open_symlink_loop_eloop(folder) -> None:
    """A cycle of symlinks fails with ELOOP, not a hang or EIO."""
    (folder.rw / "a").symlink_to("b")
    (folder.rw / "b").symlink_to("a")
    with raises_errno(errno.ELOOP):
        os.open(folder.rw / "a", os.O_RDONLY)
    with raises_errno(errno.ELOOP):
        os.stat(folder.rw / "a")


def test_open_directory_flag_mismatches(folder) -> None:
    """EISDIR for write opens of a directory, ENOTDIR for O_DIRECTORY on a file."""
    d = make_dir(folder.rw / "d")
    f = make_file(folder.rw / "f")
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_WRONLY | os.O_CREAT, os.O_RDWR | os.O_TRUNC):
        with raises_errno(errno.EISDIR):
            os.open(d, flags, 0o644)
    with raises_errno(errno.ENOTDIR):
        os.open(f, os.O_RDONLY | os.O_DIRECTORY)
    os.close(os.open(d, os.O_RDONLY | os.O_DIRECTORY))


def test_open_missing_and_non_directory_components(folder) -> None:
    """ENOENT for a missing entry or parent, ENOTDIR when a parent is a file."""
    make_file(folder.rw / "f")
    with raises_errno(errno.ENOENT):
        os.open(folder.rw / "missing", os.O_RDONLY)
    with raises_errno(errno.ENOENT):
        os.open(folder.rw / "missing" / "x", os.O_CREAT | os.O_WRONLY, 0o644)
    with raises_errno(errno.ENOTDIR):
        os.open(folder.rw / "f" / "x", os.O_CREAT | os.O_WRONLY, 0o644)
    with raises_errno(errno.ENOTDIR):
        os.stat(folder.rw / "f" / "x")


def test_open_name_of_255_bytes_works_256_is_enametoolong(folder) -> None:
    """NAME_MAX is 255 bytes (counted in bytes, not characters)."""
    for name in ("a" * 255, "é" * 127 + "a"):
        assert len(name.encode()) == 255
        make_file(folder.rw / name, data=b"long")
        assert (folder.rw / name).read_bytes() == b"long"
        assert name in os.listdir(folder.rw)
        os.unlink(folder.rw / name)
    for name in ("b" * 256, "é" * 128):
        with raises_errno(errno.ENAMETOOLONG):
            os.open(folder.rw / name, os.O_CREAT | os.O_WRONLY, 0o644)
        with raises_errno(errno.ENAMETOOLONG):
            os.stat(folder.rw / name)


def _try_open(name: str, flags: int) -> str:
    os.close(os.open(name, flags))
    return "ok"


@pytest.mark.parametrize(
    ("mode", "flags", "want"),
    [
        (0o000, os.O_RDONLY, errno.EACCES),
        (0o000, os.O_WRONLY, errno.EACCES),
        (0o400, os.O_RDONLY, None),
        (0o400, os.O_WRONLY, errno.EACCES),
        (0o400, os.O_RDWR, errno.EACCES),
        (0o200, os.O_WRONLY, None),
        (0o200, os.O_RDONLY, errno.EACCES),
        (0o600, os.O_RDWR, None),
        (0o044, os.O_RDONLY, errno.EACCES),
    ],
)
def test_open_owner_permission_bits(folder, mode: int, flags: int, want: int | None) -> None:
    """The owner's bits decide for the owner (group/other bits do not widen them)."""
    home = make_dir(folder.rw / "home", USER)
    make_file(home / "f", USER, mode)
    if want is None:
        assert run_as(USER, _try_open, "f", flags, cwd=home) == "ok"
    else:
        with raises_errno(want):
            run_as(USER, _try_open, "f", flags, cwd=home)


def test_open_group_and_other_bits(folder) -> None:
    """Group bits apply to group members, other bits to everyone else; root bypasses both."""
    pub = make_dir(folder.rw / "pub", mode=0o755)
    make_file(pub / "g", (0, USER[1]), 0o640)
    make_file(pub / "o", (0, 0), 0o604)
    make_file(pub / "none", (0, 0), 0o000)
    assert run_as(USER, _try_open, "g", os.O_RDONLY, cwd=pub) == "ok"
    with raises_errno(errno.EACCES):
        run_as(OTHER, _try_open, "g", os.O_RDONLY, cwd=pub)
    with raises_errno(errno.EACCES):
        run_as(USER, _try_open, "g", os.O_WRONLY, cwd=pub)
    assert run_as(OTHER, _try_open, "o", os.O_RDONLY, cwd=pub) == "ok"
    assert run_as(OTHER, _try_open, "g", os.O_RDONLY, cwd=pub, groups=(USER[1],)) == "ok"
    assert run_as(ROOT, _try_open, "none", os.O_RDWR, cwd=pub) == "ok"


def test_open_create_needs_write_and_search_on_parent(folder) -> None:
    """Creating needs write+search on the parent; reaching a file needs search on every dir."""
    closed = make_dir(folder.rw / "closed", mode=0o755)
    with raises_errno(errno.EACCES):
        run_as(USER, _create, "closed/f", 0o644, cwd=folder.rw)
    assert not (folder.backing / "closed" / "f").exists()
    nosearch = make_dir(folder.rw / "nosearch", USER, 0o666)
    make_file(nosearch / "f", USER, 0o666)
    with raises_errno(errno.EACCES):
        run_as(USER, _try_open, "nosearch/f", os.O_RDONLY, cwd=folder.rw)
    assert sorted(run_as(USER, os.listdir, "nosearch", cwd=folder.rw)) == ["f"]
    assert stat.S_IMODE(os.stat(closed).st_mode) == 0o755


def test_open_append_writes_at_end_whatever_the_offset(folder) -> None:
    """O_APPEND writes land at the current end of file, even after lseek to 0."""
    f = make_file(folder.rw / "f", data=b"head")
    fd = os.open(f, os.O_WRONLY | os.O_APPEND)
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, b"-tail")
    finally:
        os.close(fd)
    assert f.read_bytes() == b"head-tail"
    assert (folder.backing / "f").read_bytes() == b"head-tail"


def test_open_rdwr_data_round_trip_with_holes(folder) -> None:
    """pwrite past the end leaves a hole that reads as zeros; pread sees what was written."""
    fd = os.open(folder.rw / "f", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.pwrite(fd, b"abc", 0)
        os.pwrite(fd, b"xyz", 1 << 20)
        assert os.pread(fd, 3, 0) == b"abc"
        assert os.pread(fd, 8, (1 << 20) - 5) == b"\0" * 5 + b"xyz"
        assert os.fstat(fd).st_size == (1 << 20) + 3
    finally:
        os.close(fd)
    data = Path(folder.backing / "f").read_bytes()
    assert data[:3] == b"abc" and data[-3:] == b"xyz" and data[3:-3] == bytes(len(data) - 6)
