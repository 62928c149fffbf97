"""Symlinks and ``..`` cannot lead the mount server out of a folder's backing directory.

What the semantics are, established by these tests:

* The server never follows a symlink. A link stored in a folder (made through the mount or
  planted in the backing directory) is answered as a link: ``lstat`` says S_IFLNK and
  ``readlink`` returns the stored bytes verbatim. Following it is the *kernel's* job, and the
  kernel resolves the target in the calling process's namespace and root — for a process on
  the host, an absolute link to /etc reaches the host's /etc exactly as opening /etc directly
  would; inside a container, the container's /etc. A process chrooted to the mount point
  therefore finds nothing behind ``/etc`` links: if data from outside ever came back there,
  the server resolved the link itself. The chrooted readers below are that proof.
* Relative links resolve in the *mount* tree, not the backing tree. A link whose target
  would reach another folder's data when resolved from the backing directory
  (``../../<fan-out>/<other>/secret``) points at nothing through the mount.
* ``..`` at a folder root is the view directory (``rw/`` or ``ro/``), never a backing fan-out
  directory, and ``..`` of the view is the mount root. Folders are isolated from each other
  by what is bind-mounted into a session (only ``rw|ro/<vfid>``): from inside such a bind
  mount ``..`` stays inside the session's own tree, so even a link ``../<other vfid>/x`` that
  works on the host finds nothing there (checked with a private mount namespace below).
* Operations that do not follow links (lchown, utimensat with AT_SYMLINK_NOFOLLOW, xattrs
  with nofollow, unlink, rename) act on the link and never on its target.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from pathlib import Path

import pytest
from fsprobe import fork_call, make_dir, make_file, raises_errno, snapshot

pytestmark = pytest.mark.fuse

SECRET = b"OUTSIDE-SECRET-must-never-be-read-through-the-mount"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory outside every folder holding a secret file."""
    d = make_dir(tmp_path / "outside", mode=0o755)
    make_file(d / "secret", data=SECRET)
    make_file(d / "outside-only-entry")
    return d


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _chrooted(mountd, fn, *args):  # type: ignore[no-untyped-def]
    """Run ``fn(*args)`` as root in a child whose root directory is the mount point."""
    return fork_call(fn, *args, chroot=mountd.mount_point).result()


def test_containment_absolute_links_are_answered_as_links(mountd, folder, outside) -> None:
    """Absolute links to /etc, to a directory outside and to a file outside, planted in the
    backing directory, are links through both views, with their targets verbatim."""
    targets = {"etc": "/etc", "dir": str(outside), "file": str(outside / "secret")}
    for name, target in targets.items():
        os.symlink(target, folder.backing / name)
    for view in (folder.rw, folder.ro):
        for name, target in targets.items():
            st = os.lstat(view / name)
            assert stat.S_ISLNK(st.st_mode), f"{view / name} is not a link: {st}"
            assert os.readlink(view / name) == target
            assert st.st_size == len(target)


def test_containment_absolute_link_does_not_resolve_on_server(mountd, folder, outside) -> None:
    """Chrooted at the mount point, a process finds nothing behind absolute links: the
    server did not resolve them on its side."""
    os.symlink(str(outside / "secret"), folder.backing / "file")
    os.symlink(str(outside), folder.backing / "dir")
    os.symlink("/etc", folder.backing / "etc")
    rel = Path("/rw") / folder.vfid
    for path in ("file", "dir/secret", "etc/passwd"):
        with raises_errno(errno.ENOENT):
            _chrooted(mountd, _read, str(rel / path))
    with raises_errno(errno.ENOENT):
        _chrooted(mountd, os.listdir, str(rel / "dir"))
    # The same links followed by a process on the host reach the host's files, as a direct
    # open would: resolution is the caller's, not the server's.
    assert (folder.rw / "file").read_bytes() == SECRET


def test_containment_relative_link_cannot_reach_sibling_backing(mountd, folder, outside) -> None:
    """A relative link that would reach another folder's secret in *backing* space (and one
    that climbs to a file next to the folders) resolves in the mount tree and finds nothing."""
    other = mountd.new_folder(scope=folder.scope)
    make_file(other.backing / "secret", data=SECRET)
    stranger = mountd.new_folder()
    make_file(stranger.backing / "secret", data=SECRET)
    links = {
        "same_scope": os.path.relpath(other.backing / "secret", folder.backing),
        "other_scope": os.path.relpath(stranger.backing / "secret", folder.backing),
        "outside": os.path.relpath(outside / "secret", folder.backing),
    }
    for name, target in links.items():
        assert target.startswith("../")
        os.symlink(target, folder.rw / name)
        assert os.readlink(folder.backing / name) == target
    rel = Path("/rw") / folder.vfid
    for name in links:
        with raises_errno(errno.ENOENT):
            _chrooted(mountd, _read, str(rel / name))
        with raises_errno(errno.ENOENT):
            _chrooted(mountd, _read, str(Path("/ro") / folder.vfid / name))


def test_containment_dotdot_at_folder_root_is_the_view(mountd, folder) -> None:
    """``..`` of rw/<vfid> is rw/, of ro/<vfid> is ro/, of those the mount root; listing
    ``..`` shows folder ids, never backing fan-out directories or scope names."""
    mp = mountd.mount_point
    for view, view_dir in ((folder.rw, mp / "rw"), (folder.ro, mp / "ro")):
        assert os.stat(os.path.join(view, "..")).st_ino == os.stat(view_dir).st_ino
        assert os.stat(os.path.join(view, "..", "..")).st_ino == os.stat(mp).st_ino
        names = os.listdir(os.path.join(view, ".."))
        assert folder.vfid in names
        assert all(len(n) == 32 for n in names), names
        fd = os.open(view, os.O_RDONLY | os.O_DIRECTORY)
        try:
            up = os.open("..", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            try:
                assert os.fstat(up).st_ino == os.stat(view_dir).st_ino
            finally:
                os.close(up)
        finally:
            os.close(fd)
    assert sorted(os.listdir(mp)) == ["ro", "rw"]
    inside = f"/rw/{folder.vfid}/../../../../.."
    assert sorted(_chrooted(mountd, os.listdir, inside)) == ["ro", "rw"]


_CLONE_NEWNS = 0x00020000
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18
_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def _in_session(view: str, jail: str, fn, *args):  # type: ignore[no-untyped-def]
    """Like a session container: a private mount namespace whose root is ``jail`` with the
    folder view bind-mounted at /home/work/data; then ``fn(*args)``."""
    _check(_libc.unshare(_CLONE_NEWNS), "unshare")
    _check(_libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None), "make private")
    target = os.path.join(jail, "home", "work", "data")
    _check(_libc.mount(view.encode(), target.encode(), None, _MS_BIND, None), "bind")
    os.chroot(jail)
    os.chdir("/home/work/data")
    return fn(*args)


def test_containment_bind_mounted_view_keeps_dotdot_inside_session(
    mountd, folder, tmp_path: Path
) -> None:
    """Through a bind mount of rw/<vfid> (what sessions get), ``..`` and a relative link to
    a sibling folder (``../<vfid>/secret``, which on the host does reach it) stay in the
    session's tree and find nothing."""
    sibling = mountd.new_folder(scope=folder.scope)
    make_file(sibling.rw / "secret", data=SECRET)
    os.symlink(f"../{sibling.vfid}/secret", folder.rw / "sib")
    assert (folder.rw / "sib").read_bytes() == SECRET  # on the host: the mount tree
    jail = tmp_path / "jail"
    (jail / "home" / "work" / "data").mkdir(parents=True)
    view = str(folder.rw)
    with raises_errno(errno.ENOENT):
        fork_call(_in_session, view, str(jail), _read, "sib").result()
    got = fork_call(_in_session, view, str(jail), os.listdir, "..").result()
    assert got == ["data"]
    got = fork_call(_in_session, view, str(jail), os.listdir, "/").result()
    assert got == ["home"]


def test_containment_nofollow_operations_touch_only_the_link(mountd, folder, outside) -> None:
    """lchown, lutimes, nofollow xattr calls, rename and unlink on a link to an outside
    file change the link (or fail) and leave the outside file exactly as it was."""
    before = snapshot(outside)
    link = folder.rw / "l"
    os.symlink(str(outside / "secret"), link)
    os.chown(link, 4321, 4321, follow_symlinks=False)
    assert os.lstat(link).st_uid == 4321
    os.utime(link, ns=(1, 2), follow_symlinks=False)
    assert os.lstat(link).st_mtime_ns == 2
    with raises_errno(errno.EPERM):
        os.setxattr(link, "user.x", b"y", follow_symlinks=False)
    with raises_errno(errno.ENODATA, errno.EPERM):
        os.getxattr(link, "user.x", follow_symlinks=False)
    os.rename(link, folder.rw / "l2")
    os.link(folder.rw / "l2", folder.rw / "l3", follow_symlinks=False)
    assert os.readlink(folder.rw / "l3") == str(outside / "secret")
    os.unlink(folder.rw / "l2")
    os.unlink(folder.rw / "l3")
    assert snapshot(outside) == before
    assert os.listdir(folder.backing) == []


def test_containment_directory_link_is_not_entered_by_server_walks(mountd, folder) -> None:
    """A link to / inside a folder is one file to quota (a rescan does not walk through it)
    and readdir of the folder shows the link itself."""
    scope_usage = mountd.call("usage", host=mountd.config.default_host, scope=folder.scope)
    os.symlink("/", folder.rw / "root")
    os.symlink("/usr", folder.rw / "usr")
    result = mountd.call("rescan", host=mountd.config.default_host, scope=folder.scope)
    (entry,) = result["scopes"]
    assert entry["after"]["files"] == scope_usage["used_files"] + 2
    assert entry["after"]["bytes"] == scope_usage["used_bytes"]
    with os.scandir(folder.rw) as it:
        kinds = {e.name: e.is_symlink() for e in it}
    assert kinds == {"root": True, "usr": True}
