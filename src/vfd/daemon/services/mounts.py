"""``vfd mount`` / ``vfd umount``: bind-mount a folder's view anywhere on the node.

The daemon (root) makes the bind mount for the caller. The view is ``ro/`` when asked or when
the caller's permission is ``ro``, and such a bind mount is itself read-only (``MS_RDONLY``,
set before the mount is attached): the kernel refuses writes with EROFS before they reach
mountd, and ``access(W_OK)`` says so too (on the ``ro/`` view alone the kernel answers it from
the file modes). The target must be an existing, empty directory that the caller owns
(admins: any), given as a real path (no symbolic link anywhere in it), not a mount point,
outside the vfd mount itself; umount only removes a bind mount of a vfd view whose folder the
caller reaches, and detaches it lazily (processes still working in it keep it until they
leave; it is gone from the tree at once).

The target is opened once, without following any link (``bindmount.open_dir``), and every
check and the mount itself act on that descriptor: a user who swaps the directory for a link
after the checks cannot redirect the mount.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vfd.daemon import bindmount
from vfd.daemon.services.access import accessible
from vfd.daemon.services.context import Caller, Daemon
from vfd.daemon.services.files import folder_view
from vfd.daemon.userfs import VIEWS_GONE
from vfd.errors import ErrorCode, VfdError

VFD_FSTYPE = "fuse.vfd"


_RACED = {
    errno.ENOENT: ErrorCode.PATH_NOT_FOUND,  # the directory was removed
    errno.ESTALE: ErrorCode.PATH_NOT_FOUND,  # a mount on the path went away
    errno.EINVAL: ErrorCode.PATH_NOT_FOUND,  # umount: the mount is gone already
    errno.EBUSY: ErrorCode.PATH_EXISTS,  # something was mounted there meanwhile
    errno.ENOTDIR: ErrorCode.NOT_A_DIRECTORY,
    errno.ELOOP: ErrorCode.INVALID_PATH,
    errno.EACCES: ErrorCode.PERMISSION_DENIED,
    errno.EPERM: ErrorCode.PERMISSION_DENIED,
    errno.ENAMETOOLONG: ErrorCode.NAME_TOO_LONG,
}
"""What an OSError met after the target was opened means: the caller (or another call)
changed the target meanwhile, a 4xx; any other errno is the system's failure (500)."""


@contextlib.contextmanager
def _failing(what: str, target: str) -> Iterator[None]:
    """An OSError met while checking, mounting or unmounting ``target`` as an error saying
    so: a target changed meanwhile (removed, unmounted, mounted on) answers a 4xx."""
    try:
        yield
    except OSError as exc:
        code = _RACED.get(exc.errno or 0, ErrorCode.INTERNAL)
        reason = exc.strerror or str(exc)
        if code is not ErrorCode.INTERNAL:
            reason += f" ({target} changed while the daemon worked on it)"
        raise VfdError(code, f"{what}: {reason}", path=target) from None


def _open_target(target: str, *, what: str) -> int:
    """The target directory, opened without following links; ``what`` names it in errors."""
    try:
        return bindmount.open_dir(target)
    except bindmount.ForeignFuse as exc:
        raise VfdError(
            ErrorCode.INVALID_PATH,
            f"{target} is on a FUSE file system a user mounted ({exc.entry.mount_point}): "
            "the daemon does not enter those",
            path=target,
        ) from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EINVAL):
            raise VfdError(ErrorCode.INVALID_PATH, _not_real(target), path=target) from None
        if exc.errno == errno.ENOENT:
            raise VfdError(
                ErrorCode.PATH_NOT_FOUND, f"{target} does not exist; {what}", path=target
            ) from None
        if exc.errno == errno.ENOTDIR:
            raise VfdError(
                ErrorCode.NOT_A_DIRECTORY, f"{target} is not a directory", path=target
            ) from None
        code = _RACED.get(exc.errno or 0, ErrorCode.INTERNAL)
        raise VfdError(code, f"cannot open {target}: {exc.strerror}", path=target) from None


def _not_real(target: str) -> str:
    try:  # for the message only: the path may be changing under us
        real = os.path.realpath(target)
    except OSError:
        return f"{target} is not a real path (a symbolic link or '..' is in it)"
    return f"{target} is not a real path (it resolves to {real}); give that instead"


def _check_target(daemon: Daemon, caller: Caller, target: str, fd: int) -> None:
    """The rules for a mount target, checked on the opened directory ``fd``."""
    st = os.fstat(fd)
    if not stat.S_ISDIR(st.st_mode):  # pragma: no cover - open_dir returns directories
        raise VfdError(ErrorCode.NOT_A_DIRECTORY, f"{target} is not a directory", path=target)
    mnt = daemon.config.mount_point
    path = Path(target)
    if path == mnt or mnt in path.parents or bindmount.mount_of(fd).fstype == VFD_FSTYPE:
        raise VfdError(ErrorCode.INVALID_PATH, "the target is inside the vfd mount", path=target)
    if not caller.is_admin and st.st_uid != caller.user.uid:
        raise VfdError(ErrorCode.PERMISSION_DENIED, f"{target} is not your directory", path=target)
    if bindmount.is_mount_root(fd):
        raise VfdError(ErrorCode.PATH_EXISTS, f"something is already mounted on {target}")
    if bindmount.list_dir(fd):
        raise VfdError(ErrorCode.DIRECTORY_NOT_EMPTY, f"{target} is not empty", path=target)


def _check_view(source: Path) -> None:
    """Refuse a view mountd does not serve: statfs always reaches the server, so a dead mount
    (a killed mountd, whose attributes the kernel may still have cached) fails here rather
    than being bound."""
    try:
        os.statvfs(source)
        if not stat.S_ISDIR(os.stat(source).st_mode):
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
    except OSError as exc:
        raise VfdError(
            ErrorCode.MOUNTD_UNAVAILABLE,
            f"{VIEWS_GONE} ({source}: {os.strerror(exc.errno or errno.EIO)})",
        ) from None


def mount(daemon: Daemon, caller: Caller, name: str, *, target: str, ro: bool) -> dict[str, Any]:
    if not target.startswith("/"):
        raise VfdError(ErrorCode.INVALID_PATH, "the target must be an absolute path", path=target)
    with bindmount.LOCK:
        fd = _open_target(target, what="make the directory first")
        try:
            with _failing(f"cannot check {target}", target):
                _check_target(daemon, caller, target, fd)
            view, source, _ident = folder_view(daemon, caller, name, ro=ro)
            _check_view(source)
            with _failing(f"bind mount of {source} on {target} failed", target):
                bindmount.bind(str(source), fd, readonly=view == "ro")
        finally:
            os.close(fd)
    return {"vfolder": name, "target": str(Path(target)), "view": view, "source": str(source)}


def umount(daemon: Daemon, caller: Caller, *, target: str) -> dict[str, Any]:
    """Remove a bind mount of a vfd view; the caller must reach the folder mounted there."""
    if not target.startswith("/"):
        raise VfdError(ErrorCode.INVALID_PATH, f"{target} is not an absolute real path")
    with bindmount.LOCK:
        try:
            fd = bindmount.open_dir(target)
        except bindmount.ForeignFuse:
            raise VfdError(
                ErrorCode.PERMISSION_DENIED, f"{target} is not a vfd folder mount", path=target
            ) from None
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                raise VfdError(
                    ErrorCode.PATH_NOT_FOUND, f"nothing is mounted on {target}", path=target
                ) from None
            if exc.errno in (errno.ELOOP, errno.EINVAL):
                raise VfdError(
                    ErrorCode.INVALID_PATH, f"{target} is not an absolute real path"
                ) from None
            code = _RACED.get(exc.errno or 0, ErrorCode.INTERNAL)
            raise VfdError(code, f"cannot open {target}: {exc.strerror}", path=target) from None
        try:
            with _failing(f"cannot check {target}", target):
                if not bindmount.is_mount_root(fd):
                    raise VfdError(
                        ErrorCode.PATH_NOT_FOUND, f"nothing is mounted on {target}", path=target
                    )
                top = bindmount.mount_of(fd)
            parts = top.root.strip("/").split("/")
            if top.fstype != VFD_FSTYPE or len(parts) != 2 or parts[0] not in ("rw", "ro"):
                raise VfdError(
                    ErrorCode.PERMISSION_DENIED, f"{target} is not a vfd folder mount", path=target
                )
            if not caller.is_admin:
                with daemon.session() as session:
                    reachable = {a.folder.id.hex for a in accessible(session, caller.user)}
                if parts[1] not in reachable:
                    raise VfdError(
                        ErrorCode.PERMISSION_DENIED,
                        f"{target} holds a folder you cannot reach",
                        path=target,
                    )
            with _failing(f"umount {target} failed", target):
                bindmount.unmount(fd)
        finally:
            os.close(fd)
    return {"target": target, "unmounted": True}
