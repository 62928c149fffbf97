"""POSIX conformance of mkdir(2), rmdir(2), readdir and directory permission bits on rw/.

The pjdfstest ``mkdir`` and ``rmdir`` categories plus the sticky and setgid directory rules,
as root and as unprivileged uids (forked children, ``fsprobe.run_as``). readdir is checked
for completeness on large directories and for POSIX's promise under concurrent unlinks
(entries neither added nor removed appear exactly once), which a per-opendir snapshot with
index offsets must keep.
"""

from __future__ import annotations

import errno
import os
import stat

import pytest
from fsprobe import OTHER, USER, make_dir, make_file, raises_errno, run_as, settle

pytestmark = pytest.mark.fuse

ROOT = (0, 0)


def _mkdir(name: str, mode: int) -> tuple[int, int, int]:
    os.mkdir(name, mode)
    st = os.stat(name)
    return st.st_mode, st.st_uid, st.st_gid


@pytest.mark.parametrize(
    ("ids", "mode", "umask", "want"),
    [
        (ROOT, 0o777, 0o022, 0o755),
        (ROOT, 0o700, 0o000, 0o700),
        (USER, 0o777, 0o027, 0o750),
        (USER, 0o1777, 0o000, 0o1777),
    ],
)
def test_mkdir_sets_mode_and_owner(
    folder, ids: tuple[int, int], mode: int, umask: int, want: int
) -> None:
    """mkdir makes a directory with ``mode & ~umask`` owned by the caller, on disk too."""
    home = make_dir(folder.rw / "home", USER)
    assert run_as(ids, _mkdir, "d", mode, cwd=home, umask=umask) == (stat.S_IFDIR | want, *ids)
    st = os.stat(folder.backing / "home" / "d")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (want, *ids)


def test_mkdir_rmdir_update_parent_link_count_and_times(folder) -> None:
    """A subdirectory adds one link to its parent (its ``..``); rmdir takes it back; both
    update the parent's mtime and ctime."""
    parent = make_dir(folder.rw / "p")
    assert os.stat(parent).st_nlink == 2
    before = settle(parent)
    os.mkdir(parent / "d")
    mid = os.stat(parent)
    assert mid.st_nlink == 3
    assert mid.st_mtime_ns > before.st_mtime_ns and mid.st_ctime_ns > before.st_ctime_ns
    assert os.stat(parent / "d").st_nlink == 2
    before = settle(parent)
    os.rmdir(parent / "d")
    after = os.stat(parent)
    assert after.st_nlink == 2
    assert after.st_mtime_ns > before.st_mtime_ns and after.st_ctime_ns > before.st_ctime_ns
    assert os.listdir(folder.backing / "p") == []


@pytest.mark.parametrize("kind", ["file", "dir", "symlink", "dangling symlink"])
def test_mkdir_over_existing_entry_eexist(folder, kind: str) -> None:
    """mkdir on any existing name fails with EEXIST and leaves the entry as it was."""
    path = folder.rw / "x"
    if kind == "file":
        make_file(path, data=b"keep")
    elif kind == "dir":
        path.mkdir()
    else:
        path.symlink_to("." if kind == "symlink" else "nowhere")
    before = os.lstat(path)
    with raises_errno(errno.EEXIST):
        os.mkdir(path)
    assert os.lstat(path).st_ino == before.st_ino
    assert not (folder.rw / "nowhere").exists()


def test_mkdir_name_length_limit(folder) -> None:
    """A 255-byte directory name works; 256 bytes fail with ENAMETOOLONG."""
    os.mkdir(folder.rw / ("d" * 255))
    assert os.path.isdir(folder.backing / ("d" * 255))
    with raises_errno(errno.ENAMETOOLONG):
        os.mkdir(folder.rw / ("d" * 256))


@pytest.mark.parametrize("ids", [ROOT, USER])
def test_mkdir_in_setgid_dir_inherits_group_and_setgid_bit(folder, ids: tuple[int, int]) -> None:
    """Project folders rely on this: a subdirectory of a setgid directory takes its group
    and is setgid itself, whoever makes it."""
    shared = make_dir(folder.rw / "shared", (0, 2000), 0o2777)
    got = run_as(ids, _mkdir, "sub", 0o755, cwd=shared)
    assert got == (stat.S_IFDIR | stat.S_ISGID | 0o755, ids[0], 2000)
    st = os.stat(folder.backing / "shared" / "sub")
    assert st.st_gid == 2000 and st.st_mode & stat.S_ISGID
    got = run_as(ids, _mkdir, "sub/deeper", 0o700, cwd=shared)
    assert got == (stat.S_IFDIR | stat.S_ISGID | 0o700, ids[0], 2000)


def test_mkdir_and_rmdir_need_write_on_parent(folder) -> None:
    """An unprivileged user can neither add nor remove entries of a directory it cannot write."""
    closed = make_dir(folder.rw / "closed", mode=0o755)
    make_dir(closed / "victim", USER, 0o777)
    with raises_errno(errno.EACCES):
        run_as(USER, os.mkdir, "closed/new", cwd=folder.rw)
    with raises_errno(errno.EACCES):
        run_as(USER, os.rmdir, "closed/victim", cwd=folder.rw)
    assert sorted(os.listdir(folder.backing / "closed")) == ["victim"]


def test_rmdir_non_empty_enotempty(folder) -> None:
    """rmdir of a directory holding a file, a subdirectory or only a symlink: ENOTEMPTY."""
    for i, fill in enumerate(("file", "dir", "link")):
        d = make_dir(folder.rw / f"d{i}")
        if fill == "file":
            (d / "f").touch()
        elif fill == "dir":
            (d / "sub").mkdir()
        else:
            (d / "l").symlink_to("nowhere")
        with raises_errno(errno.ENOTEMPTY, errno.EEXIST):
            os.rmdir(d)
        assert os.path.isdir(folder.backing / f"d{i}")


def test_rmdir_errors(folder) -> None:
    """ENOTDIR for a file or a symlink to a directory, ENOENT for a missing name,
    EINVAL for ``.``."""
    make_file(folder.rw / "f")
    make_dir(folder.rw / "d")
    (folder.rw / "l").symlink_to("d")
    with raises_errno(errno.ENOTDIR):
        os.rmdir(folder.rw / "f")
    with raises_errno(errno.ENOTDIR):
        os.rmdir(folder.rw / "l")
    with raises_errno(errno.ENOENT):
        os.rmdir(folder.rw / "missing")
    with raises_errno(errno.EINVAL):
        os.rmdir(os.path.join(folder.rw, "d", "."))
    assert os.path.isdir(folder.backing / "d") and os.path.islink(folder.backing / "l")


def _remove(name: str) -> str:
    if os.path.isdir(name) and not os.path.islink(name):
        os.rmdir(name)
    else:
        os.unlink(name)
    return "ok"


def test_sticky_dir_keeps_strangers_from_removing_entries(folder) -> None:
    """In a sticky world-writable directory only the entry's owner, the directory's owner
    and root may remove or rename an entry; a stranger gets EPERM."""
    tmp = make_dir(folder.rw / "tmp", mode=0o1777)
    make_file(tmp / "f", USER, 0o666)
    make_dir(tmp / "d", USER, 0o777)
    make_file(tmp / "mine", OTHER, 0o666)
    for name in ("f", "d"):
        with raises_errno(errno.EPERM):
            run_as(OTHER, _remove, name, cwd=tmp)
        with raises_errno(errno.EPERM):
            run_as(OTHER, os.rename, name, "stolen", cwd=tmp)
    with raises_errno(errno.EPERM):
        run_as(OTHER, os.rename, "mine", "f", cwd=tmp)
    assert sorted(os.listdir(folder.backing / "tmp")) == ["d", "f", "mine"]
    assert run_as(USER, _remove, "f", cwd=tmp) == "ok"
    assert run_as(USER, _remove, "d", cwd=tmp) == "ok"
    assert run_as(ROOT, _remove, "mine", cwd=tmp) == "ok"
    assert os.listdir(folder.backing / "tmp") == []


def test_sticky_dir_owner_may_remove_any_entry(folder) -> None:
    """The sticky directory's owner removes entries of other users."""
    tmp = make_dir(folder.rw / "tmp", OTHER, 0o1777)
    make_file(tmp / "f", USER, 0o644)
    assert run_as(OTHER, _remove, "f", cwd=tmp) == "ok"
    assert not (folder.backing / "tmp" / "f").exists()


def test_readdir_lists_every_entry_once(folder) -> None:
    """A directory of 3,000 entries (many readdir calls) lists each name once, with types."""
    d = make_dir(folder.rw / "big")
    names = {f"file-{i:05d}-{'x' * (i % 40)}" for i in range(3000)}
    for name in names:
        (d / name).touch()
    os.mkdir(d / "sub")
    (d / "lnk").symlink_to("sub")
    with os.scandir(d) as it:
        kinds = {e.name: (e.is_dir(follow_symlinks=False), e.is_symlink()) for e in it}
    listed = os.listdir(d)
    assert len(listed) == len(set(listed))
    assert set(listed) == names | {"sub", "lnk"} == set(kinds)
    assert kinds["sub"] == (True, False) and kinds["lnk"] == (False, True)
    assert kinds["file-00000-"] == (False, False)


def test_readdir_is_stable_while_entries_are_unlinked(folder) -> None:
    """Unlinking entries during a listing never makes a remaining entry vanish or repeat."""
    d = make_dir(folder.rw / "big")
    names = [f"n{i:05d}" for i in range(2000)]
    for name in names:
        (d / name).touch()
    doomed = set(names[1::2])
    seen: list[str] = []
    with os.scandir(d) as it:
        for entry in it:
            seen.append(entry.name)
            if doomed:
                victim = doomed.pop()
                os.unlink(d / victim)
    assert len(seen) == len(set(seen)), "an entry was returned twice"
    kept = set(names[0::2])
    assert kept <= set(seen), f"entries lost: {sorted(kept - set(seen))[:5]}"


def test_readdir_dot_entries_and_inodes(folder) -> None:
    """readdir hides nothing and invents nothing; stat through names agrees with lstat."""
    d = make_dir(folder.rw / "d")
    make_file(d / "f", data=b"1234")
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert os.listdir(fd) == ["f"]
    finally:
        os.close(fd)
    with os.scandir(d) as it:
        (entry,) = it
    assert entry.inode() == os.lstat(d / "f").st_ino
    assert entry.stat(follow_symlinks=False).st_size == 4
    assert os.stat(d / "..").st_ino == os.stat(folder.rw).st_ino
