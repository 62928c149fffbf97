"""Every mutation through a folder's ro/ view fails with EROFS and leaves the disk alone.

The design's read-only rule: in ``ro/`` every mutating operation (open for write or
truncate, create, mkdir, mknod, symlink, link, unlink, rmdir, rename, setattr, setxattr,
removexattr) fails with EROFS, and the backing tree is untouched. Each case runs as root,
who passes every permission check, so the refusal must come from the mount itself; the
whole backing tree (paths, modes, owners, sizes, link counts, mtimes, ctimes, contents,
xattrs) is compared before and after.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from fsprobe import (
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    USER,
    make_dir,
    make_file,
    raises_errno,
    renameat2,
    run_as,
    snapshot,
)

pytestmark = pytest.mark.fuse


@pytest.fixture
def tree(folder):
    """A folder holding one of each kind of entry, written through rw/."""
    rw = folder.rw
    make_file(rw / "f", data=b"original data")
    os.setxattr(rw / "f", "user.k", b"v")
    make_dir(rw / "d")
    make_file(rw / "d" / "inner", data=b"inner")
    make_dir(rw / "empty")
    (rw / "l").symlink_to("f")
    (rw / "dl").symlink_to("d")
    (rw / "dangling").symlink_to("target")
    os.mkfifo(rw / "p")
    make_file(rw / "mine", USER, 0o644, b"user's")
    return folder


def _open(flags: int) -> Callable[[Path, Path], object]:
    def op(ro: Path, rw: Path) -> None:
        os.close(os.open(ro / "f", flags, 0o644))

    return op


def _create(name: str, flags: int) -> Callable[[Path, Path], object]:
    def op(ro: Path, rw: Path) -> None:
        os.close(os.open(ro / name, flags, 0o644))

    return op


MUTATIONS: dict[str, Callable[[Path, Path], object]] = {
    "open O_WRONLY": _open(os.O_WRONLY),
    "open O_RDWR": _open(os.O_RDWR),
    "open O_RDONLY|O_TRUNC": _open(os.O_RDONLY | os.O_TRUNC),
    "open O_WRONLY|O_TRUNC": _open(os.O_WRONLY | os.O_TRUNC),
    "open O_WRONLY|O_APPEND": _open(os.O_WRONLY | os.O_APPEND),
    "open O_RDWR via symlink": lambda ro, rw: os.close(os.open(ro / "l", os.O_RDWR)),
    "creat new": _create("new", os.O_CREAT | os.O_WRONLY | os.O_TRUNC),
    "open O_CREAT|O_RDONLY new": _create("new", os.O_CREAT | os.O_RDONLY),
    "open O_CREAT|O_EXCL new": _create("new", os.O_CREAT | os.O_EXCL | os.O_RDWR),
    "open O_CREAT in subdir": _create("d/new", os.O_CREAT | os.O_WRONLY),
    "creat through dangling link": _create("dangling", os.O_CREAT | os.O_WRONLY),
    "mkdir": lambda ro, rw: os.mkdir(ro / "newdir"),
    "mkdir in subdir": lambda ro, rw: os.mkdir(ro / "d" / "newdir"),
    "mknod regular": lambda ro, rw: os.mknod(ro / "n", stat.S_IFREG | 0o644),
    "mknod char device": lambda ro, rw: os.mknod(ro / "n", stat.S_IFCHR | 0o600, os.makedev(1, 3)),
    "mkfifo": lambda ro, rw: os.mkfifo(ro / "p2"),
    "symlink": lambda ro, rw: os.symlink("f", ro / "l2"),
    "link within ro": lambda ro, rw: os.link(ro / "f", ro / "f2"),
    "link rw file into ro": lambda ro, rw: os.link(rw / "f", ro / "f2"),
    "link ro file out into rw": lambda ro, rw: os.link(ro / "f", rw / "f2"),
    "unlink file": lambda ro, rw: os.unlink(ro / "f"),
    "unlink symlink": lambda ro, rw: os.unlink(ro / "l"),
    "unlink fifo": lambda ro, rw: os.unlink(ro / "p"),
    "unlink in subdir": lambda ro, rw: os.unlink(ro / "d" / "inner"),
    "rmdir": lambda ro, rw: os.rmdir(ro / "empty"),
    "rename within ro": lambda ro, rw: os.rename(ro / "f", ro / "g"),
    "rename over file within ro": lambda ro, rw: os.rename(ro / "mine", ro / "f"),
    "rename dir over empty dir within ro": lambda ro, rw: os.rename(ro / "d", ro / "empty"),
    "rename into subdir within ro": lambda ro, rw: os.rename(ro / "f", ro / "d" / "f"),
    "rename ro to rw": lambda ro, rw: os.rename(ro / "f", rw / "g"),
    "rename ro dir to rw": lambda ro, rw: os.rename(ro / "d", rw / "d2"),
    "rename rw to ro": lambda ro, rw: os.rename(rw / "f", ro / "g"),
    "rename rw over ro file": lambda ro, rw: os.rename(rw / "mine", ro / "f"),
    "renameat2 NOREPLACE within ro": lambda ro, rw: renameat2(ro / "f", ro / "g", RENAME_NOREPLACE),
    "renameat2 EXCHANGE within ro": lambda ro, rw: renameat2(ro / "f", ro / "d", RENAME_EXCHANGE),
    "renameat2 EXCHANGE rw with ro": lambda ro, rw: renameat2(
        rw / "f", ro / "mine", RENAME_EXCHANGE
    ),
    "chmod file": lambda ro, rw: os.chmod(ro / "f", 0o600),
    "chmod dir": lambda ro, rw: os.chmod(ro / "d", 0o700),
    "chmod folder root": lambda ro, rw: os.chmod(ro, 0o777),
    "chmod via symlink": lambda ro, rw: os.chmod(ro / "l", 0o600),
    "chown file": lambda ro, rw: os.chown(ro / "f", 1234, 1234),
    "chown dir": lambda ro, rw: os.chown(ro / "d", 1234, -1),
    "lchown symlink": lambda ro, rw: os.chown(ro / "l", 1234, 1234, follow_symlinks=False),
    "truncate shrink": lambda ro, rw: os.truncate(ro / "f", 1),
    "truncate grow": lambda ro, rw: os.truncate(ro / "f", 1 << 20),
    "truncate same size": lambda ro, rw: os.truncate(ro / "f", len(b"original data")),
    "utime explicit": lambda ro, rw: os.utime(ro / "f", ns=(1, 2)),
    "utime now": lambda ro, rw: os.utime(ro / "f"),
    "utime dir": lambda ro, rw: os.utime(ro / "d", ns=(1, 2)),
    "utime symlink nofollow": lambda ro, rw: os.utime(ro / "l", ns=(1, 2), follow_symlinks=False),
    "setxattr new": lambda ro, rw: os.setxattr(ro / "f", "user.new", b"x"),
    "setxattr replace": lambda ro, rw: os.setxattr(ro / "f", "user.k", b"changed"),
    "setxattr on dir": lambda ro, rw: os.setxattr(ro / "d", "user.new", b"x"),
    "setxattr on folder root": lambda ro, rw: os.setxattr(ro, "user.new", b"x"),
    "removexattr": lambda ro, rw: os.removexattr(ro / "f", "user.k"),
    "removexattr missing": lambda ro, rw: os.removexattr(ro / "f", "user.absent"),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_readonly_mutation_fails_with_erofs_and_changes_nothing(tree, name: str) -> None:
    """The mutation fails with EROFS and the backing tree is exactly as before."""
    before = snapshot(tree.backing)
    with raises_errno(errno.EROFS):
        MUTATIONS[name](tree.ro, tree.rw)
    assert snapshot(tree.backing) == before
    assert (tree.rw / "f").read_bytes() == b"original data"


def _mutate_as_user(kind: str) -> None:
    if kind == "write":
        os.close(os.open("mine", os.O_WRONLY))
    elif kind == "chmod":
        os.chmod("mine", 0o600)
    elif kind == "utime":
        os.utime("mine")
    elif kind == "create":
        os.close(os.open("home/new", os.O_CREAT | os.O_WRONLY, 0o644))
    elif kind == "unlink":
        os.unlink("home/own")
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["write", "chmod", "utime", "create", "unlink"])
def test_readonly_refuses_owner_who_has_permission(tree, kind: str) -> None:
    """An unprivileged owner, whose permission checks pass, still gets EROFS in ro/."""
    make_dir(tree.rw / "home", USER)
    make_file(tree.rw / "home" / "own", USER)
    before = snapshot(tree.backing)
    with raises_errno(errno.EROFS):
        run_as(USER, _mutate_as_user, kind, cwd=tree.ro)
    assert snapshot(tree.backing) == before


def test_readonly_write_through_rw_descriptor_is_unaffected(tree) -> None:
    """The ro/ refusals are per view: the same file stays writable through rw/."""
    with raises_errno(errno.EROFS):
        os.open(tree.ro / "f", os.O_WRONLY)
    with open(tree.rw / "f", "ab") as out:
        out.write(b"+more")
    assert (tree.backing / "f").read_bytes() == b"original data+more"
