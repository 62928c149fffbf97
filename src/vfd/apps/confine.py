"""Confining an app server to a session's folders, as the session's user.

The daemon (root) starts an app server as ``python -m vfd.apps.<server>``
(:mod:`vfd.apps.process`), hands it a :class:`ConfineSpec` as one JSON document on its stdin
(never on its command line: it may carry keys) and a listening socket it bound itself. The
server reads the spec (:func:`read_spec`), imports everything it will need, then calls
:func:`confine`, which, still as root:

1. moves the process into a mount namespace of its own, every mount private to it;
2. opens each folder view (``<mount_point>/rw|ro/<vfolder hex>``) with ``O_PATH``;
3. mounts a small tmpfs holding one directory per folder and binds each view there by its
   descriptor (``ro`` folders bound read-only too, every bind ``nosuid,nodev``), then makes
   the tmpfs itself read-only;
4. ``chroot``s into it, drops to the user's uid, gid and groups (after which no privilege can
   be regained), sets ``no_new_privs`` and asks for SIGKILL when the daemon dies.

What the server serves from then on is that tree: ``/<folder name>/...``. A symbolic link or a
``..`` resolves inside it, so nothing outside the session's folders is reachable, and a write
into a read-only folder fails with ``EROFS`` whatever the server does. Quota and every other
rule of the views hold, since each folder is mountd's view.

Readiness and the end are reported on stdout as JSON lines (:func:`report`): ``{"ready":
{...}}`` once serving, ``{"stopped": REASON}`` before an orderly exit, ``{"error": MESSAGE}``
when it could not start.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

CLONE_NEWNS = 0x00020000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38

ROOT_SIZE = "1m"
"""The tmpfs holding the folder directories: nothing else is ever written to it."""
STAGE = "/tmp"
"""Where the tmpfs is mounted inside the namespace before the chroot (hidden from every other
process: the namespace is private)."""


class ConfineError(Exception):
    """Confining failed (a mount, the chroot, dropping privileges): the server must not
    serve."""


@dataclass(frozen=True)
class FolderBind:
    """A folder view shown at the root of the confined tree."""

    name: str
    """The directory at the root (``/<name>``): the folder's name, or the last part of the
    target it was asked at."""
    source: str
    """The view: ``<mount_point>/rw/<vfolder hex>`` or ``.../ro/...``."""
    read_only: bool


@dataclass(frozen=True)
class ConfineSpec:
    """Everything an app server needs, sent by the daemon on the server's stdin."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    folders: tuple[FolderBind, ...]
    listen_fd: int
    """The listening TCP socket the daemon bound and passed."""
    parent_pid: int
    """The daemon's pid: the server ends when it is gone."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """The server's own settings (keys, idle timeout, tokens...)."""

    def to_json(self) -> str:
        return json.dumps(
            {
                "uid": self.uid,
                "gid": self.gid,
                "groups": list(self.groups),
                "folders": [
                    {"name": f.name, "source": f.source, "read_only": f.read_only}
                    for f in self.folders
                ],
                "listen_fd": self.listen_fd,
                "parent_pid": self.parent_pid,
                "options": dict(self.options),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ConfineSpec:
        data = json.loads(text)
        return cls(
            uid=int(data["uid"]),
            gid=int(data["gid"]),
            groups=tuple(int(g) for g in data["groups"]),
            folders=tuple(
                FolderBind(str(f["name"]), str(f["source"]), bool(f["read_only"]))
                for f in data["folders"]
            ),
            listen_fd=int(data["listen_fd"]),
            parent_pid=int(data["parent_pid"]),
            options=dict(data.get("options") or {}),
        )


def check_name(name: str) -> None:
    """A directory name at the root: one path part, not ``.`` or ``..``."""
    if not name or name in (".", "..") or "/" in name or "\x00" in name:
        raise ConfineError(f"{name!r} cannot be a directory at the root")


def read_spec() -> ConfineSpec:
    """The spec from stdin (read to its end); stdin is then ``/dev/null``."""
    text = sys.stdin.read()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    return ConfineSpec.from_json(text)


def report(**what: Any) -> None:
    """One JSON line on stdout for the daemon (``ready``, ``stopped``, ``error``)."""
    try:
        os.write(1, (json.dumps(what) + "\n").encode())
    except OSError:
        pass  # the daemon is gone: nothing to tell


_libc: ctypes.CDLL | None = None


def _c() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise ConfineError(f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str) -> None:
    _check(
        _c().mount(
            None if source is None else source.encode(),
            target.encode(),
            None if fstype is None else fstype.encode(),
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def _prctl(option: int, arg: int) -> None:
    _check(_c().prctl(option, ctypes.c_ulong(arg), 0, 0, 0), f"prctl {option}")


def confine(spec: ConfineSpec) -> None:
    """Enter the confined tree as the spec's user (see the module's docstring). Call it as
    root, after every import the server needs: afterwards only the folders exist."""
    for folder in spec.folders:
        check_name(folder.name)
    if len({f.name for f in spec.folders}) != len(spec.folders):
        raise ConfineError("two folders would have the same directory at the root")
    _c()  # loaded before the chroot
    _check(_c().unshare(CLONE_NEWNS), "unshare")
    _mount(None, "/", None, MS_REC | MS_PRIVATE, "")
    fds = []
    try:
        for folder in spec.folders:
            flags = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                fds.append(os.open(folder.source, flags))
            except OSError as exc:
                raise ConfineError(f"folder {folder.name!r}: {exc.strerror}") from None
        _mount("vfd-app", STAGE, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"size={ROOT_SIZE}")
        os.chmod(STAGE, 0o755)
        for folder, fd in zip(spec.folders, fds, strict=True):
            target = os.path.join(STAGE, folder.name)
            os.mkdir(target, 0o755)
            _mount(f"/proc/self/fd/{fd}", target, None, MS_BIND, "")
            flags = MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV
            _mount(None, target, None, flags | (MS_RDONLY if folder.read_only else 0), "")
    finally:
        for fd in fds:
            os.close(fd)
    flags = MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
    _mount(None, STAGE, None, flags, f"size={ROOT_SIZE}")
    os.chdir(STAGE)
    os.chroot(".")
    os.chdir("/")
    drop(spec.uid, spec.gid, spec.groups)
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    # after the credentials changed (a change clears it), and checked against a daemon
    # that died before it was set
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != spec.parent_pid:
        raise ConfineError("the daemon is gone")


def drop(uid: int, gid: int, groups: tuple[int, ...]) -> None:
    """Become ``uid``/``gid`` with ``groups``, for good (real, effective and saved ids)."""
    if uid == 0 or gid == 0:
        raise ConfineError("an app server never runs as root")
    os.setgroups(list(groups))
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
        raise ConfineError("the user's ids did not stick")
    try:
        os.setuid(0)
    except PermissionError:
        return
    raise ConfineError("root could be regained after dropping privileges")
