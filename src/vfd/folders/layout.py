"""Where a folder's data lives on its storage host, and quota scope names.

    <host root>/<scope kind>-<scope uuid hex>/<vfid[0:2]>/<vfid[2:4]>/<vfid[4:]>/

The two fan-out levels keep directories small on hosts with many folders. Scope directories
and the fan-out levels are root-only (0700 / 0711): users reach data only through the mount.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from vfd import safedirs
from vfd.errors import ErrorCode, VfdError

USER_ROOT_MODE = 0o755
PROJECT_ROOT_MODE = 0o2775


@dataclass(frozen=True)
class Scope:
    """A quota scope: ``user:<hex>`` or ``project:<hex>`` (on one host)."""

    kind: str
    owner: uuid.UUID

    def __str__(self) -> str:
        return f"{self.kind}:{self.owner.hex}"

    @property
    def dirname(self) -> str:
        return f"{self.kind}-{self.owner.hex}"

    @classmethod
    def parse(cls, text: str) -> Scope:
        kind, sep, rest = text.partition(":")
        if not sep or kind not in ("user", "project"):
            raise VfdError(
                ErrorCode.INVALID_ARGUMENT,
                f"bad quota scope {text!r}: expected user:<uuid> or project:<uuid>",
            )
        try:
            return cls(kind, uuid.UUID(rest))
        except ValueError:
            raise VfdError(
                ErrorCode.INVALID_ARGUMENT, f"bad quota scope {text!r}: {rest!r} is not a UUID"
            ) from None


def folder_path(host_root: Path, scope: Scope, vfid: uuid.UUID) -> Path:
    """The backing directory of folder ``vfid``."""
    h = vfid.hex
    return host_root / scope.dirname / h[0:2] / h[2:4] / h[4:]


def scope_path(host_root: Path, scope: Scope) -> Path:
    return host_root / scope.dirname


def create_folder_dir(path: Path, *, uid: int, gid: int, project: bool) -> None:
    """Make a folder's empty backing directory owned by ``uid:gid``.

    Raises VFOLDER_EXISTS if the directory is already there (it is never reused).
    """
    host_root = path.parents[3]
    safedirs.ensure_dir(host_root, safedirs.HOST_ROOT_MODE)
    for parent, mode in ((path.parents[2], 0o700), (path.parents[1], 0o711), (path.parent, 0o711)):
        try:
            parent.mkdir(mode=mode)
        except FileExistsError:
            pass
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        raise VfdError(
            ErrorCode.VFOLDER_EXISTS, f"backing directory {path} already exists", path=str(path)
        ) from None
    try:
        os.chown(path, uid, gid)
        os.chmod(path, PROJECT_ROOT_MODE if project else USER_ROOT_MODE)
    except BaseException:
        path.rmdir()
        raise


def remove_folder_dir(path: Path) -> None:
    """Remove a folder's backing tree (never following symlinks) and empty fan-out parents."""
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    for parent in (path.parent, path.parents[1]):
        try:
            parent.rmdir()
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.ENOENT, errno.EEXIST):
                raise
            break
