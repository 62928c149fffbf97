"""Bind mounts made on one opened directory, never on a path that can change underneath.

A path a user names is walked from ``/`` one component at a time with
``openat(O_PATH|O_NOFOLLOW)``: no symbolic link anywhere in it is followed, and the checks
(owner, emptiness, mount point, file system) and the mount then act on the descriptor the walk
ends with. Swapping a component for a link after the walk changes nothing: the descriptor
still holds the directory that was checked. The walk does not enter a FUSE file system that a
user mounted, whose server could keep it waiting forever.

The bind is made with the mount API (Linux 5.12+): ``open_tree(OPEN_TREE_CLONE)`` clones the
source into a detached mount, ``mount_setattr`` gives it its flags while it is still detached
(so a read-only view is never attached writable, not even for an instant), and
``move_mount`` attaches it onto the target descriptor.

``umount2`` has no descriptor form. It is given ``/proc/self/fd/N`` (without
``UMOUNT_NOFOLLOW``, which would stop at the magic link itself: EINVAL): the kernel resolves
the link to the descriptor's own place and then, as for every ``umount`` path, to the topmost
mount stacked there, which is the mount the walk entered unless one was stacked since. Only
root can stack mounts, so callers serialise their own mount changes (``LOCK``). The open
descriptor pins its mount, so a plain umount would always be EBUSY: the unmount is a lazy
detach (``MNT_DETACH``), gone from the tree at once, freed when the last process using it
lets go.

The syscall numbers are those of the kernel's uapi tables (``asm/unistd_64.h`` on x86_64,
``asm-generic/unistd.h`` on aarch64: the same numbers, as for every syscall added since 5.0);
``struct mount_attr`` is the uapi struct of four ``__u64``. Other machines are refused.

All functions block: call them from worker threads.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import stat
import threading

from vfd import mountinfo

LOCK = threading.Lock()
"""Held by the daemon around a check and the mount change that follows it."""

_NR = {
    # (open_tree, move_mount, mount_setattr)
    "x86_64": (428, 429, 442),
    "aarch64": (428, 429, 442),
}.get(platform.machine())

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_EMPTY_PATH = 0x1000
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x04
MOVE_MOUNT_T_EMPTY_PATH = 0x40
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MNT_DETACH = 0x2

_DIR_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_FUSE_TYPES = frozenset({"fuse", "fuseblk"})

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.umount2.restype = ctypes.c_int


class _MountAttr(ctypes.Structure):
    """``struct mount_attr`` (linux/mount.h, MOUNT_ATTR_SIZE_VER0 = 32 bytes)."""

    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def _syscall(number: int, *args: object) -> int:
    res: int = _libc.syscall(ctypes.c_long(number), *args)
    if res < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return res


def _numbers() -> tuple[int, int, int]:
    if _NR is None:
        raise OSError(
            errno.ENOSYS, f"the mount API's syscall numbers are unknown on {platform.machine()}"
        )
    return _NR


def is_fuse(entry: mountinfo.MountEntry) -> bool:
    """Whether a mount is a FUSE file system (``fuse``, ``fuseblk``, ``fuse.<subtype>``)."""
    return entry.fstype.split(".")[0] in _FUSE_TYPES


class ForeignFuse(Exception):
    """The walk reached a FUSE file system that a user mounted (``entry``)."""

    def __init__(self, path: str, entry: mountinfo.MountEntry) -> None:
        super().__init__(f"{path}: {entry.mount_point} is a user's FUSE mount ({entry.fstype})")
        self.entry = entry


def open_dir(path: str) -> int:
    """An ``O_PATH`` descriptor of the directory ``path`` (absolute), walked from ``/`` with
    no symbolic link followed. A mount on a component is entered (its topmost mount), except
    a FUSE mount that root did not make: any user may mount one (``fusermount3``, which
    records their uid as ``user_id=``), and its server could leave the walk waiting forever,
    so it is refused (``ForeignFuse``) before anything in it is asked.

    Raises ``OSError``: ``ELOOP`` when a component is a symbolic link, ``ENOTDIR`` when one
    is not a directory, ``EINVAL`` for a relative path or a ``..`` component, ``ENOENT``...
    """
    if not path.startswith("/"):
        raise OSError(errno.EINVAL, "not an absolute path", path)
    names = [name for name in os.fsencode(path).split(b"/") if name not in (b"", b".")]
    if b".." in names:
        raise OSError(errno.EINVAL, "'..' in the path", path)
    fd = os.open("/", _DIR_FLAGS | os.O_DIRECTORY)
    try:
        here = mount_id(fd)
        for name in names:
            child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
            if (there := mount_id(fd)) != here:  # crossed into a mount: no fs call yet
                entry = mountinfo.by_id(there)
                if entry is None:
                    raise OSError(errno.ESTALE, "a mount on the path went away", path)
                if is_fuse(entry) and "user_id=0" not in entry.super_options:
                    raise ForeignFuse(path, entry)
                here = there
            mode = os.fstat(fd).st_mode
            if stat.S_ISLNK(mode):
                raise OSError(errno.ELOOP, "a symbolic link in the path", path)
            if not stat.S_ISDIR(mode):
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def mount_id(fd: int) -> int:
    """The id of the mount ``fd`` is on (``mnt_id:`` of ``/proc/self/fdinfo/N``), as
    ``/proc/self/mountinfo`` numbers mounts."""
    with open(f"/proc/self/fdinfo/{fd}", "rb") as f:
        for line in f:
            if line.startswith(b"mnt_id:"):
                return int(line.split()[1])
    raise OSError(errno.ENOSYS, "fdinfo has no mnt_id")  # pragma: no cover - kernels < 3.15


def mount_of(fd: int) -> mountinfo.MountEntry:
    """The mount ``fd`` is on."""
    entry = mountinfo.by_id(mount_id(fd))
    if entry is None:  # pragma: no cover - the mount went away under us
        raise OSError(errno.ESTALE, "the descriptor's mount is gone")
    return entry


def is_mount_root(fd: int) -> bool:
    """Whether ``fd`` (a directory) is the root of its mount, i.e. something is mounted on
    the place it was reached by: its ``..`` then lies on another mount (or it is ``/``)."""
    parent = os.open("..", _DIR_FLAGS | os.O_DIRECTORY, dir_fd=fd)
    try:
        if mount_id(parent) != mount_id(fd):
            return True
        here, up = os.fstat(fd), os.fstat(parent)
        return (here.st_dev, here.st_ino) == (up.st_dev, up.st_ino)
    finally:
        os.close(parent)


def list_dir(fd: int) -> list[str]:
    """The names in the directory ``fd`` holds (re-opened for reading through its magic
    link, which yields the very same directory, not a lookup of its path)."""
    readable = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return os.listdir(readable)
    finally:
        os.close(readable)


def bind(source: str, target_fd: int, *, readonly: bool) -> None:
    """Bind-mount the directory ``source`` (not recursively; ``nosuid,nodev``, plus ``ro``
    when ``readonly``) onto the directory ``target_fd`` holds."""
    open_tree, move_mount, mount_setattr = _numbers()
    tree = _syscall(
        open_tree,
        ctypes.c_int(AT_FDCWD),
        ctypes.c_char_p(os.fsencode(source)),
        ctypes.c_uint(OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_SYMLINK_NOFOLLOW),
    )
    try:  # a detached tree that is closed unattached is unmounted by the kernel
        attr = _MountAttr(
            attr_set=MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | (MOUNT_ATTR_RDONLY if readonly else 0)
        )
        _syscall(
            mount_setattr,
            ctypes.c_int(tree),
            ctypes.c_char_p(b""),
            ctypes.c_uint(AT_EMPTY_PATH),
            ctypes.byref(attr),
            ctypes.c_size_t(ctypes.sizeof(attr)),
        )
        _syscall(
            move_mount,
            ctypes.c_int(tree),
            ctypes.c_char_p(b""),
            ctypes.c_int(target_fd),
            ctypes.c_char_p(b""),
            ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH),
        )
    finally:
        os.close(tree)


def unmount(fd: int) -> None:
    """Detach the mount whose root ``fd`` holds (the topmost one stacked there; see the
    module's docstring)."""
    if _libc.umount2(f"/proc/self/fd/{fd}".encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
