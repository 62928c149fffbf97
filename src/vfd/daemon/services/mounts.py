"""``vfd mount`` / ``vfd umount``: bind-mount a folder's view anywhere on the node.

The daemon (root) makes the bind mount for the caller. The view is ``ro/`` when asked or when
the caller's permission is ``ro``, and such a bind mount is itself read-only (``MS_RDONLY``):
the kernel refuses writes with EROFS before they reach mountd, and ``access(W_OK)`` says so
too (on the ``ro/`` view alone the kernel answers it from the file modes). The target
must be an existing, empty directory that the caller owns (admins: any), given as a real path
(no symbolic link anywhere in it), outside the vfd mount itself; umount only removes a bind
mount of a vfd view.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from typing import Any

from vfd import mountinfo
from vfd.daemon.services.access import accessible
from vfd.daemon.services.context import Caller, Daemon
from vfd.daemon.services.files import folder_view
from vfd.errors import ErrorCode, VfdError


def _check_target(daemon: Daemon, caller: Caller, target: str) -> Path:
    if not target.startswith("/"):
        raise VfdError(ErrorCode.INVALID_PATH, "the target must be an absolute path", path=target)
    path = Path(target)
    real = Path(os.path.realpath(path))
    if real != path:
        raise VfdError(
            ErrorCode.INVALID_PATH,
            f"{target} is not a real path (it resolves to {real}); give that instead",
            path=target,
        )
    mnt = daemon.config.mount_point
    if real == mnt or mnt in real.parents:
        raise VfdError(ErrorCode.INVALID_PATH, "the target is inside the vfd mount", path=target)
    try:
        st = os.lstat(real)
    except OSError:
        raise VfdError(
            ErrorCode.PATH_NOT_FOUND,
            f"{target} does not exist; make the directory first",
            path=target,
        ) from None
    if not stat.S_ISDIR(st.st_mode):
        raise VfdError(ErrorCode.NOT_A_DIRECTORY, f"{target} is not a directory", path=target)
    if not caller.is_admin and st.st_uid != caller.user.uid:
        raise VfdError(ErrorCode.PERMISSION_DENIED, f"{target} is not your directory", path=target)
    return real


def mount(daemon: Daemon, caller: Caller, name: str, *, target: str, ro: bool) -> dict[str, Any]:
    real = _check_target(daemon, caller, target)
    if mountinfo.mounts_at(real):
        raise VfdError(ErrorCode.PATH_EXISTS, f"something is already mounted on {target}")
    if os.listdir(real):
        raise VfdError(ErrorCode.DIRECTORY_NOT_EMPTY, f"{target} is not empty", path=target)
    view, source, _ident = folder_view(daemon, caller, name, ro=ro)
    if not source.is_dir():
        raise VfdError(
            ErrorCode.MOUNTD_UNAVAILABLE,
            f"the folder's view {source} is not mounted (is mountd up?)",
        )
    # given explicitly: the remount that applies "ro" would clear the flags the bind inherits
    options = "nosuid,nodev,ro" if view == "ro" else "nosuid,nodev"
    _run(["mount", "--bind", "-o", options, str(source), str(real)])
    return {"vfolder": name, "target": str(real), "view": view, "source": str(source)}


def umount(daemon: Daemon, caller: Caller, *, target: str) -> dict[str, Any]:
    """Remove a bind mount of a vfd view; the caller must reach the folder mounted there."""
    if not target.startswith("/") or Path(os.path.realpath(target)) != Path(target):
        raise VfdError(ErrorCode.INVALID_PATH, f"{target} is not an absolute real path")
    entries = mountinfo.mounts_at(target)
    if not entries:
        raise VfdError(ErrorCode.PATH_NOT_FOUND, f"nothing is mounted on {target}", path=target)
    top = entries[-1]
    parts = top.root.strip("/").split("/")
    if top.fstype != "fuse.vfd" or len(parts) < 2 or parts[0] not in ("rw", "ro"):
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
    _run(["umount", target])
    return {"target": target, "unmounted": True}


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise VfdError(
            ErrorCode.INTERNAL, f"{' '.join(argv)} failed: {proc.stderr.strip() or proc.returncode}"
        )
