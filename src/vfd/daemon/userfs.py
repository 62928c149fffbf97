"""File operations inside one folder view, performed with a user's filesystem identity.

The daemon serves uploads, downloads and file management by working on the folder's view in
the FUSE mount (``<mount>/rw/<vfid>`` or ``ro/<vfid>``), never on the backing directory, so
quota and read-only rules are enforced by mountd alone. Two properties are kept here:

* **Identity.** Every call runs with the user's fsuid/fsgid and supplementary groups, set on
  the calling thread only (``setfsuid``/``setfsgid`` and the raw ``setgroups`` syscall are
  per-thread; glibc's ``setgroups`` would change every thread). Files are therefore created
  by the user — owned by them, as mountd creates files for the caller — and Unix permissions
  inside the folder apply to them exactly as in a session.
* **Containment.** Paths are split into components ('..' refused), and walked one directory
  at a time with ``O_PATH|O_NOFOLLOW`` relative to the view root, so no symbolic link — inside
  the folder or swapped in during the walk — leads anywhere else.

All functions block: call them from worker threads.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import platform
import shutil
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from vfd import wirenames
from vfd.errors import ErrorCode, VfdError
from vfd.tarread import DIRECTORY, REGULAR, SYMLINK, TarError, TarReader

MAX_COMPONENT_BYTES = 255
MAX_PATH_BYTES = 4095

_libc = ctypes.CDLL(None, use_errno=True)
_SYS_SETGROUPS = {"x86_64": 116, "aarch64": 159}.get(platform.machine())

_ERRNO_CODES = {
    errno.ENOENT: ErrorCode.PATH_NOT_FOUND,
    errno.EEXIST: ErrorCode.PATH_EXISTS,
    errno.ENOTDIR: ErrorCode.NOT_A_DIRECTORY,
    errno.EISDIR: ErrorCode.IS_A_DIRECTORY,
    errno.ENOTEMPTY: ErrorCode.DIRECTORY_NOT_EMPTY,
    errno.EACCES: ErrorCode.PERMISSION_DENIED,
    errno.EPERM: ErrorCode.PERMISSION_DENIED,
    errno.EROFS: ErrorCode.READ_ONLY,
    errno.EDQUOT: ErrorCode.QUOTA_EXCEEDED,
    errno.ENOSPC: ErrorCode.QUOTA_EXCEEDED,
    errno.EXDEV: ErrorCode.CROSS_SCOPE,
    errno.ELOOP: ErrorCode.INVALID_PATH,
    errno.ENAMETOOLONG: ErrorCode.NAME_TOO_LONG,
    errno.EINVAL: ErrorCode.INVALID_PATH,
    # the FUSE connection is gone: mountd was killed or crashed, and the mount is dead
    errno.ENOTCONN: ErrorCode.MOUNTD_UNAVAILABLE,
    errno.ECONNABORTED: ErrorCode.MOUNTD_UNAVAILABLE,
}

VIEWS_GONE = (
    "the folder views are not mounted: mountd stopped or crashed; "
    "`systemctl restart vfd-mountd`, or `vfd up` restarts it"
)
"""What a file operation answers when the mount is dead or absent."""


def os_error(exc: OSError, path: str) -> VfdError:
    """The one translation of an OSError met inside a folder into a VfdError."""
    code = _ERRNO_CODES.get(exc.errno or 0, ErrorCode.INTERNAL)
    if code is ErrorCode.MOUNTD_UNAVAILABLE:
        return VfdError(code, VIEWS_GONE, path=path or "/", errno=exc.errno, not_running=True)
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    if code is ErrorCode.QUOTA_EXCEEDED:
        reason = "the folder's quota is exceeded"
    elif code is ErrorCode.READ_ONLY:
        reason = "the folder is read-only for you"
    return VfdError(code, f"{path or '/'}: {reason}", path=path or "/")


def view_unavailable(root: str, exc: OSError) -> VfdError:
    """Why the view ``root`` (``<mount>/<rw|ro>/<vfid>``) cannot be opened: the mount is dead
    or not there (mountd is not running), or mountd does not serve this folder."""
    mount_point = os.path.dirname(os.path.dirname(root))
    dead = exc.errno in (errno.ENOTCONN, errno.ECONNABORTED)
    if dead or not os.path.ismount(mount_point):
        return VfdError(
            ErrorCode.MOUNTD_UNAVAILABLE, VIEWS_GONE, view=root, errno=exc.errno, not_running=True
        )
    return VfdError(
        ErrorCode.MOUNTD_UNAVAILABLE,
        f"the folder's view {root} is not available ({exc.strerror}): mountd does not serve "
        "this folder; it loads every ready folder when it starts — `systemctl restart "
        "vfd-mountd`, or `vfd up` restarts it",
        view=root,
        errno=exc.errno,
        not_running=False,
    )


@dataclass(frozen=True)
class Identity:
    """The filesystem identity a user's file operations run with."""

    uid: int
    gid: int
    groups: tuple[int, ...] = ()


def _setgroups_this_thread(groups: tuple[int, ...]) -> None:
    if _SYS_SETGROUPS is None:  # pragma: no cover - other architectures
        raise OSError(errno.ENOSYS, "setgroups syscall number unknown on this machine")
    arr = (ctypes.c_uint * max(len(groups), 1))(*groups)
    if _libc.syscall(_SYS_SETGROUPS, len(groups), arr) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def acting_as(ident: Identity) -> Iterator[None]:
    """Run the block with ``ident`` as this thread's filesystem identity, then restore it."""
    old_groups = tuple(os.getgroups())
    old_gid = _libc.setfsgid(ident.gid)
    old_uid = _libc.setfsuid(ident.uid)
    try:
        _setgroups_this_thread(ident.groups)
    except BaseException:
        _libc.setfsuid(old_uid)
        _libc.setfsgid(old_gid)
        raise
    try:
        yield
    finally:
        _libc.setfsuid(old_uid)
        _libc.setfsgid(old_gid)
        _setgroups_this_thread(old_groups)


def split_path(path: str) -> list[str]:
    """Components of a path inside a folder; '' and '/' mean the folder root."""
    raw = path.encode("utf-8", "surrogateescape")
    if b"\x00" in raw:
        raise VfdError(ErrorCode.INVALID_PATH, "path must not contain NUL", path=path)
    if len(raw) > MAX_PATH_BYTES:
        raise VfdError(
            ErrorCode.INVALID_PATH, f"path is longer than {MAX_PATH_BYTES} bytes", path=path
        )
    parts = [p for p in path.split("/") if p not in ("", ".")]
    for part in parts:
        if part == "..":
            raise VfdError(
                ErrorCode.INVALID_PATH, "path must not contain '..' components", path=path
            )
        if len(part.encode("utf-8", "surrogateescape")) > MAX_COMPONENT_BYTES:
            raise VfdError(
                ErrorCode.NAME_TOO_LONG,
                f"path component is longer than {MAX_COMPONENT_BYTES} bytes",
                path=path,
            )
    return parts


def file_type(mode: int) -> str:
    """The API's name for the type of an inode: ``file``, ``dir``, ``symlink`` or ``other``."""
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    return "symlink" if stat.S_ISLNK(mode) else "other"


def entry_json(name: str, st: os.stat_result, target: str | None = None) -> dict[str, Any]:
    """An entry of the API; a name or link target that is not UTF-8 also travels as
    ``name_b64``/``target_b64`` (see :mod:`vfd.wirenames`)."""
    mode = st.st_mode
    out: dict[str, Any] = {
        **wirenames.fields("name", name),
        "type": file_type(mode),
        "size": st.st_size,
        "mode": f"{stat.S_IMODE(mode):04o}",
        "uid": st.st_uid,
        "gid": st.st_gid,
        "mtime": st.st_mtime,
    }
    if target is not None:
        out.update(wirenames.fields("target", target))
    return out


def _lexists(name: str, dir_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


class FolderFS:
    """File operations inside one folder view, as one user.

    ``root`` is the view's path in the mount; it is opened by the daemon's own identity, and
    everything below it with the user's.
    """

    def __init__(self, root: str, ident: Identity) -> None:
        self.root = root
        self.ident = ident

    @contextlib.contextmanager
    def _session(self) -> Iterator[int]:
        try:
            root_fd = os.open(self.root, os.O_PATH | os.O_DIRECTORY)
        except OSError as exc:
            raise view_unavailable(self.root, exc) from None
        try:
            with acting_as(self.ident):
                yield root_fd
        finally:
            os.close(root_fd)

    def _walk(self, root_fd: int, parts: list[str], path: str) -> int:
        """Open the directory ``parts`` below the root without following any link."""
        fd = os.dup(root_fd)
        for part in parts:
            try:
                nxt = os.open(part, os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY, dir_fd=fd)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                    raise VfdError(
                        ErrorCode.NOT_A_DIRECTORY,
                        f"{path}: {part!r} is not a directory (links are not followed)",
                        path=path,
                    ) from None
                raise os_error(exc, path) from None
            os.close(fd)
            fd = nxt
        return fd

    @contextlib.contextmanager
    def _parent(self, path: str) -> Iterator[tuple[int, str]]:
        """The open parent directory of ``path`` and the final name (refuses the root)."""
        parts = split_path(path)
        if not parts:
            raise VfdError(ErrorCode.INVALID_PATH, "the folder root cannot be used here", path=path)
        with self._session() as root_fd:
            fd = self._walk(root_fd, parts[:-1], path)
            try:
                yield fd, parts[-1]
            finally:
                os.close(fd)

    def stat(self, path: str) -> dict[str, Any]:
        parts = split_path(path)
        with self._session() as root_fd:
            if not parts:
                return entry_json("", os.stat(root_fd))
            fd = self._walk(root_fd, parts[:-1], path)
            try:
                st = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
                target = os.readlink(parts[-1], dir_fd=fd) if stat.S_ISLNK(st.st_mode) else None
                return entry_json(parts[-1], st, target)
            except OSError as exc:
                raise os_error(exc, path) from None
            finally:
                os.close(fd)

    def listdir(self, path: str) -> list[dict[str, Any]]:
        parts = split_path(path)
        with self._session() as root_fd:
            pfd = self._walk(root_fd, parts, path)
            try:
                dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY, dir_fd=pfd)
            except OSError as exc:
                raise os_error(exc, path) from None
            finally:
                os.close(pfd)
            entries = []
            try:
                for name in sorted(os.listdir(dfd)):
                    try:
                        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                        target = os.readlink(name, dir_fd=dfd) if stat.S_ISLNK(st.st_mode) else None
                    except FileNotFoundError:
                        continue  # removed while listing
                    entries.append(entry_json(name, st, target))
            except OSError as exc:
                raise os_error(exc, path) from None
            finally:
                os.close(dfd)
            return entries

    def mkdir(self, path: str, *, parents: bool = False, mode: int = 0o755) -> dict[str, Any]:
        """Make a directory; with ``parents``, missing parents too and no error if it exists."""
        parts = split_path(path)
        if not parts:
            if parents:
                return self.stat(path)
            raise VfdError(ErrorCode.PATH_EXISTS, "the folder root already exists", path=path)
        with self._session() as root_fd:
            if not parents:
                fd = self._walk(root_fd, parts[:-1], path)
                try:
                    os.mkdir(parts[-1], mode, dir_fd=fd)
                    return entry_json(parts[-1], os.stat(parts[-1], dir_fd=fd))
                except OSError as exc:
                    raise os_error(exc, path) from None
                finally:
                    os.close(fd)
            for i in range(len(parts)):
                fd = self._walk(root_fd, parts[:i], path)
                try:
                    os.mkdir(parts[i], mode, dir_fd=fd)
                except FileExistsError:
                    pass
                except OSError as exc:
                    raise os_error(exc, path) from None
                finally:
                    os.close(fd)
            fd = self._walk(root_fd, parts, path)  # refuses a non-directory or a link
            try:
                return entry_json(parts[-1], os.stat(fd))
            finally:
                os.close(fd)

    def remove(
        self, path: str, *, recursive: bool = False, expect: tuple[int, int] | None = None
    ) -> None:
        """Remove ``path``; with ``expect`` (device, inode) only if it is still that entry (a
        name swapped meanwhile is answered ``path_not_found``)."""
        with self._parent(path) as (fd, name):
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if expect is not None and (st.st_dev, st.st_ino) != expect:
                    raise VfdError(ErrorCode.PATH_NOT_FOUND, f"{path} changed meanwhile", path=path)
                if stat.S_ISDIR(st.st_mode):
                    if recursive:
                        shutil.rmtree(name, dir_fd=fd)
                    else:
                        os.rmdir(name, dir_fd=fd)
                else:
                    os.unlink(name, dir_fd=fd)
            except OSError as exc:
                raise os_error(exc, path) from None

    def move(self, src: str, dst: str) -> dict[str, Any]:
        src_parts, dst_parts = split_path(src), split_path(dst)
        if not src_parts:
            raise VfdError(ErrorCode.INVALID_PATH, "the folder root cannot be moved", path=src)
        if not dst_parts:
            raise VfdError(
                ErrorCode.INVALID_PATH,
                f"give a destination path for {src} (to move it to the folder's top level, "
                "name it there)",
                path=dst,
                field="dst",
            )
        if dst_parts[: len(src_parts)] == src_parts:
            raise VfdError(
                ErrorCode.INVALID_PATH, f"cannot move {src} into itself ({dst})", path=dst
            )
        with self._session() as root_fd:
            sfd = self._walk(root_fd, src_parts[:-1], src)
            try:
                dfd = self._walk(root_fd, dst_parts[:-1], dst)
            except BaseException:
                os.close(sfd)
                raise
            try:
                name = dst_parts[-1]
                try:
                    st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                except FileNotFoundError:
                    pass
                else:
                    if not stat.S_ISDIR(st.st_mode):
                        raise VfdError(ErrorCode.PATH_EXISTS, f"{dst} already exists", path=dst)
                    dfd2 = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY, dir_fd=dfd)
                    os.close(dfd)
                    dfd, name = dfd2, src_parts[-1]  # into an existing directory, like mv
                    dst = "/".join([*dst_parts, name])
                    if _lexists(name, dfd):
                        raise VfdError(ErrorCode.PATH_EXISTS, f"{dst} already exists", path=dst)
                os.rename(src_parts[-1], name, src_dir_fd=sfd, dst_dir_fd=dfd)
                return entry_json(name, os.stat(name, dir_fd=dfd, follow_symlinks=False))
            except OSError as exc:
                raise os_error(exc, src) from None
            finally:
                os.close(sfd)
                os.close(dfd)

    def open_file(self, path: str, flags: int = os.O_RDONLY) -> tuple[int, os.stat_result]:
        """An fd on the regular file at ``path`` (the caller closes it) and its stat.

        Anything else is refused without waiting on it (:func:`open_regular`): a directory
        ``is_a_directory``, a FIFO, socket or device ``not_a_regular_file``.
        """
        with self._parent(path) as (fd, name):
            ffd = open_regular(name, fd, flags, path)
            try:
                return ffd, os.fstat(ffd)
            except BaseException:
                os.close(ffd)
                raise

    def open_dir(self, path: str) -> int:
        """An ``O_RDONLY`` fd on the directory at ``path`` (links not followed; the caller
        closes it): the user must be able to list it."""
        parts = split_path(path)
        with self._session() as root_fd:
            fd = self._walk(root_fd, parts, path)
            try:
                return os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
            except OSError as exc:
                raise os_error(exc, path) from None
            finally:
                os.close(fd)

    def walk_files(self) -> list[tuple[str, os.stat_result]]:
        """``(path, lstat)`` of every entry below the root that is not a directory, and of
        every archive upload's staging directory (named like a part file; not entered).

        Links are listed, never followed; a directory swapped for a link during the walk is
        skipped.
        """
        found: list[tuple[str, os.stat_result]] = []
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        with self._session() as root_fd:
            try:
                stack = [(os.open(".", flags, dir_fd=root_fd), "")]
            except OSError as exc:
                raise os_error(exc, "") from None
            while stack:
                dfd, rel = stack.pop()
                try:
                    with os.scandir(dfd) as entries:
                        for entry in entries:
                            path = f"{rel}/{entry.name}" if rel else entry.name
                            try:
                                st = entry.stat(follow_symlinks=False)
                                if stat.S_ISDIR(st.st_mode) and is_part_name(entry.name):
                                    found.append((path, st))
                                elif stat.S_ISDIR(st.st_mode):
                                    stack.append((os.open(entry.name, flags, dir_fd=dfd), path))
                                else:
                                    found.append((path, st))
                            except OSError:
                                continue  # removed, or swapped for a link, meanwhile
                finally:
                    os.close(dfd)
        return found

    # -- uploads ---------------------------------------------------------------------------
    # An upload is written to ``.vfd-upload-<key>.part`` beside its destination and renamed
    # over it when complete, so no partial file is ever visible under the final name. The
    # client picks ``key`` (stable for one source file), which makes an interrupted upload
    # resumable without server-side state: the part file's size is the offset to go on from.

    def upload_state(self, path: str, key: str) -> tuple[int, str | None]:
        """The bytes an upload has stored, and the type of what is at ``path`` now (``None``
        when nothing is). A missing parent directory means nothing of either."""
        part = _part_name(key)
        try:
            with self._parent(path) as (fd, name):
                try:
                    offset = os.stat(part, dir_fd=fd, follow_symlinks=False).st_size
                except FileNotFoundError:
                    offset = 0
                try:
                    existing = file_type(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)
                except FileNotFoundError:
                    existing = None
                return offset, existing
        except OSError as exc:
            raise os_error(exc, path) from None
        except VfdError as exc:
            if exc.code is ErrorCode.PATH_NOT_FOUND:
                return 0, None
            raise

    def upload_open(self, path: str, key: str, offset: int, *, overwrite: bool = False) -> int:
        """An fd to append to the part file at ``offset`` (which must be its current size).

        Refuses, before making a part file, a destination that is a directory, or that
        exists when not ``overwrite``.
        """
        with self._parent(path) as (fd, name):
            part = _part_name(key)
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise os_error(exc, path) from None
            else:
                if stat.S_ISDIR(st.st_mode):
                    raise VfdError(ErrorCode.IS_A_DIRECTORY, f"{path} is a directory", path=path)
                if not overwrite:
                    raise VfdError(
                        ErrorCode.PATH_EXISTS,
                        f"{path} already exists (upload with overwrite to replace it)",
                        path=path,
                    )
            flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if offset == 0 else 0)
            pfd = open_regular(part, fd, flags, path, what=f"the upload's part file {part}")
            size = os.fstat(pfd).st_size
            if size != offset:
                os.close(pfd)
                raise VfdError(
                    ErrorCode.UPLOAD_OFFSET_MISMATCH,
                    f"{path}: the upload has {size} bytes stored, not {offset}; resume from {size}",
                    path=path,
                    offset=size,
                )
            os.lseek(pfd, offset, os.SEEK_SET)
            return pfd

    def upload_complete(
        self, path: str, key: str, *, size: int, overwrite: bool = False, durable: bool = False
    ) -> dict[str, Any]:
        """Rename the finished part file to ``path``; refuses a short upload. With
        ``durable``, the directory is synced after the rename (the name is on disk)."""
        with self._parent(path) as (fd, name):
            part = _part_name(key)
            try:
                st = os.stat(part, dir_fd=fd, follow_symlinks=False)
            except OSError as exc:
                raise os_error(exc, path) from None
            if st.st_size != size:
                raise VfdError(
                    ErrorCode.UPLOAD_OFFSET_MISMATCH,
                    f"{path}: the upload has {st.st_size} of {size} bytes",
                    path=path,
                    offset=st.st_size,
                )
            if not overwrite and _lexists(name, fd):
                raise VfdError(ErrorCode.PATH_EXISTS, f"{path} already exists", path=path)
            try:
                os.rename(part, name, src_dir_fd=fd, dst_dir_fd=fd)
                entry = entry_json(name, os.stat(name, dir_fd=fd, follow_symlinks=False))
                if durable:
                    dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
                    try:
                        os.fsync(dfd)
                    finally:
                        os.close(dfd)
                return entry
            except OSError as exc:
                raise os_error(exc, path) from None

    def upload_abort(self, path: str, key: str) -> None:
        """Remove an upload's part file (nothing happens if there is none)."""
        with self._parent(path) as (fd, _name):
            try:
                os.unlink(_part_name(key), dir_fd=fd)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise os_error(exc, path) from None


_SPECIAL_TYPES = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def special_type(mode: int) -> str | None:
    """``"a FIFO"``, ``"a socket"``, ... for an inode that is none of a regular file, a
    directory or a link; ``None`` otherwise."""
    for test, words in _SPECIAL_TYPES:
        if test(mode):
            return words
    return None


def _not_regular(path: str, what: str, kind: str) -> VfdError:
    return VfdError(
        ErrorCode.NOT_A_REGULAR_FILE,
        f"{what} is {kind}, not a regular file",
        path=path or "/",
        type=kind.removeprefix("a "),
    )


def open_regular(
    name: str, dir_fd: int, flags: int, path: str, *, what: str | None = None, mode: int = 0o644
) -> int:
    """Open the regular file ``name`` in ``dir_fd`` (links not followed), never blocking.

    A FIFO would block ``open()`` until a writer (or reader) comes, which may be never; a
    device could do anything. So the type is checked before the open and again on the fd,
    the open is non-blocking, and only then is ``O_NONBLOCK`` cleared for a regular file.
    Refusals: ``not_a_regular_file`` (FIFO, socket, device), ``is_a_directory``.
    """
    what = what or path or "/"
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        pass  # made by this open (O_CREAT), or the open says what is missing
    except OSError as exc:
        raise os_error(exc, path) from None
    else:
        kind = special_type(st.st_mode)
        if kind is not None:
            raise _not_regular(path, what, kind)
    try:
        fd = os.open(
            name, flags | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd
        )
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # swapped for a FIFO without a reader, or a socket
            raise _not_regular(path, what, "a FIFO or socket") from None
        raise os_error(exc, path) from None
    try:
        fmode = os.fstat(fd).st_mode
        if stat.S_ISDIR(fmode):
            raise VfdError(ErrorCode.IS_A_DIRECTORY, f"{what} is a directory", path=path or "/")
        if not stat.S_ISREG(fmode):
            raise _not_regular(path, what, special_type(fmode) or "an unknown kind of file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


_UPLOAD_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
_PART_PREFIX, _PART_SUFFIX = ".vfd-upload-", ".part"


def _valid_key(key: str) -> bool:
    return 8 <= len(key) <= 64 and set(key) <= _UPLOAD_KEY_CHARS


def _part_name(key: str) -> str:
    if not _valid_key(key):
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT,
            "upload key must be 8-64 characters of letters, digits, '-' and '_'",
            key=key,
        )
    return f"{_PART_PREFIX}{key}{_PART_SUFFIX}"


def part_name(key: str) -> str:
    """The name of an upload's part file (or an archive upload's staging directory) for
    ``key``; ``invalid_argument`` for a bad key."""
    return _part_name(key)


def is_part_name(name: str) -> bool:
    """Whether ``name`` is the name of an upload's part file."""
    return (
        name.startswith(_PART_PREFIX)
        and name.endswith(_PART_SUFFIX)
        and _valid_key(name[len(_PART_PREFIX) : -len(_PART_SUFFIX)])
    )


# -- archive uploads -----------------------------------------------------------------------
# A tar stream (read by :mod:`vfd.tarread`) is unpacked as the user into a staging
# directory ``.vfd-upload-<key>.part`` inside the target directory: in the backing tree under
# a tree grant (``unpack_tar_backing``), or through the view (``unpack_tar``). Its top-level
# entries are renamed into the target through the view once the whole archive is in, so the
# tree appears at once. Each file is made new (``O_CREAT|O_EXCL``: nothing that exists is
# ever opened) with its mode, written, given its mtime and closed: four calls.


@dataclass
class Unpacked:
    """What an archive upload made: its top-level names, counts, what it left out, and the
    modes and mtimes its directories get once placed."""

    entries: list[str]
    files: int = 0
    dirs: int = 0
    links: int = 0
    bytes: int = 0
    skipped: list[str] | None = None
    modes: dict[tuple[str, ...], tuple[int, int]] | None = None


class Budget:
    """The quota an unpacking may still use of its grant (the backing-tree path), asked for
    in chunks as it goes (``reserve(bytes, files)`` raises ``quota_exceeded``): nothing is
    made past what mountd granted."""

    CHUNK_BYTES = 64 << 20
    CHUNK_FILES = 4096

    def __init__(self, reserve: Callable[[int, int], object], nbytes: int, files: int) -> None:
        self._reserve = reserve
        self.bytes = nbytes
        self.files = files

    def take(self, nbytes: int, files: int) -> None:
        short_b = max(nbytes - self.bytes, 0)
        short_f = max(files - self.files, 0)
        if short_b or short_f:
            more_b = max(short_b, self.CHUNK_BYTES) if short_b else 0
            more_f = max(short_f, self.CHUNK_FILES) if short_f else 0
            try:
                self._reserve(more_b, more_f)
            except VfdError as exc:
                if exc.code is not ErrorCode.QUOTA_EXCEEDED or (more_b, more_f) == (
                    short_b,
                    short_f,
                ):
                    raise
                more_b, more_f = short_b, short_f  # a chunk too many: just what is needed
                self._reserve(more_b, more_f)
            self.bytes += more_b
            self.files += more_f
        self.bytes -= nbytes
        self.files -= files


def _member_parts(name: str) -> list[str]:
    """The components of an archive member's name; refuses one that would leave the
    staging directory (absolute, ``..``) or is empty."""
    parts = name.split("/")
    if "" in parts or "." in parts:  # (rare: "a//b", "./a", "a/")
        parts = [p for p in parts if p not in ("", ".")]
    if not parts or name.startswith("/") or ".." in parts:
        raise VfdError(
            ErrorCode.INVALID_PATH,
            f"archive member {name!r} is absolute, empty or goes up ('..')",
            path=name,
        )
    for part in parts:
        # a character is at most 4 bytes: a name of fewer characters needs no encoding
        if len(part) * 4 > MAX_COMPONENT_BYTES and (
            len(part.encode("utf-8", "surrogateescape")) > MAX_COMPONENT_BYTES
        ):
            raise VfdError(ErrorCode.NAME_TOO_LONG, f"archive member {name!r}", path=name)
    return parts


class _Dirs:
    """Directory fds below the staging directory, made on demand (``mkdir -p``), never
    following a link; the last one used is kept open (members come directory by directory)."""

    def __init__(
        self,
        top: int,
        made: Unpacked,
        modes: dict[tuple[str, ...], tuple[int, int]],
        budget: Budget | None = None,
    ):
        self.top = top
        self.made = made
        self.modes = modes
        self.budget = budget
        self.parts: list[str] | None = None
        """The components of the directory last asked for (open as :attr:`fd`), if any."""
        self.fd = -1

    def get(self, parts: list[str], path: str | Callable[[], str]) -> int:
        """The directory ``parts``; ``path`` names it in errors (a function: made only then)."""
        if parts == self.parts:
            return self.fd
        if callable(path):
            path = path()
        fd = os.dup(self.top)
        try:
            for i, part in enumerate(parts):
                try:
                    if self.budget is not None and not _lexists(part, fd):
                        self.budget.take(0, 1)
                    os.mkdir(part, 0o700, dir_fd=fd)
                    self.made.dirs += 1
                    self.modes.setdefault(tuple(parts[: i + 1]), (0o755, -1))
                except FileExistsError:
                    pass
                nxt = os.open(part, os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY, dir_fd=fd)
                os.close(fd)
                fd = nxt
        except OSError as exc:
            os.close(fd)
            raise os_error(exc, path) from None
        except BaseException:
            os.close(fd)
            raise
        self.close()
        self.parts, self.fd = list(parts), fd
        return fd

    def close(self) -> None:
        if self.parts is not None:
            os.close(self.fd)
            self.parts, self.fd = None, -1


def unpack_tar(
    fs: FolderFS, path: str, key: str, stream: BinaryIO, *, overwrite: bool = False
) -> Unpacked:
    """Unpack the tar ``stream`` into the directory ``path`` (see above). Blocking.

    Regular files, directories and symbolic links are made; hard links, devices, FIFOs and
    sockets are left out (listed in ``skipped``). Refuses (and removes what it made) a
    member that would leave the directory, a top-level name that exists already (unless
    ``overwrite``, which replaces files, never directories), and whatever mountd refuses
    (``quota_exceeded``, ``read_only``, ...).
    """
    staging = _part_name(key)
    parts = split_path(path)
    made = Unpacked(entries=[], skipped=[])
    modes: dict[tuple[str, ...], tuple[int, int]] = {}
    with fs._session() as root_fd:
        dfd = fs._walk(root_fd, parts, path)
        try:
            try:
                os.mkdir(staging, 0o700, dir_fd=dfd)
            except OSError as exc:
                raise os_error(exc, path) from None
            try:
                top = os.open(staging, os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY, dir_fd=dfd)
                try:
                    _unpack(stream, top, made, modes, path)
                finally:
                    os.close(top)
            except BaseException:
                shutil.rmtree(staging, dir_fd=dfd, ignore_errors=True)
                raise
            _place_staged(dfd, staging, made, modes, path, overwrite=overwrite)
        finally:
            os.close(dfd)
    return made


def _place_staged(
    dfd: int,
    staging: str,
    made: Unpacked,
    modes: dict[tuple[str, ...], tuple[int, int]],
    path: str,
    *,
    overwrite: bool,
) -> None:
    """Move the unpacked staging directory's entries into place in ``dfd``, remove it and
    give the directories their modes; on a refusal the staging tree is removed. Blocking."""
    try:
        _place(dfd, staging, made, path, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(staging, dir_fd=dfd, ignore_errors=True)
        raise
    try:
        os.rmdir(staging, dir_fd=dfd)
    except OSError as exc:
        raise os_error(exc, path) from None
    _dir_modes(dfd, made, modes, path)


def _unpack(
    stream: BinaryIO,
    top: int,
    made: Unpacked,
    modes: dict[tuple[str, ...], tuple[int, int]],
    path: str,
    budget: Budget | None = None,
) -> None:
    dirs = _Dirs(top, made, modes, budget)
    skipped = made.skipped if made.skipped is not None else []
    tar = TarReader(stream)
    buffer = memoryview(bytearray(_WRITE_PIECE))
    special = ~0o777 | _umask()
    partial = functools.partial

    def where(parts: list[str]) -> str:
        return "/".join([path, *parts]) if path else "/".join(parts)

    try:
        while (member := tar.next()) is not None:
            parts = _member_parts(member.name)
            kind = member.kind
            if kind == DIRECTORY:
                dirs.get(parts, where(parts))
                modes[tuple(parts)] = (member.mode & 0o7777, member.mtime)
                continue
            up = parts[:-1]
            parent = dirs.fd if up == dirs.parts else dirs.get(up, partial(where, parts))
            regular = kind in REGULAR
            if not regular and kind != SYMLINK:
                skipped.append(f"{'/'.join(parts)} ({member.what()})")
                continue
            size = member.size if regular else 0
            if budget is not None:
                budget.take(size, 1)
            if not regular:
                try:
                    os.symlink(member.linkname, parts[-1], dir_fd=parent)
                except OSError as exc:
                    raise os_error(exc, where(parts)) from None
                made.links += 1
                continue
            made.files += 1
            made.bytes += size
            # a regular file, made new (``O_EXCL``: nothing that exists is opened, so no FIFO
            # or device either) with its data, mode and mtime: four calls
            mode = member.mode & 0o7777
            try:
                fd = os.open(parts[-1], _CREATE, mode & 0o777, dir_fd=parent)
            except OSError as exc:
                raise os_error(exc, where(parts)) from None
            try:
                if size <= _WRITE_PIECE:
                    _write(fd, tar.data())
                else:
                    while filled := tar.readinto(buffer):
                        _write(fd, buffer[:filled])
                    tar.end_data()
                os.utime(fd, (member.mtime, member.mtime))
                if mode & special:  # bits the umask took, or set-id bits
                    os.fchmod(fd, mode)
            except OSError as exc:
                raise os_error(exc, where(parts)) from None
            finally:
                os.close(fd)
        _drain(stream)
    except TarError as exc:
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT, f"the body is not a tar archive: {exc}"
        ) from None
    finally:
        dirs.close()


_WRITE_PIECE = 1 << 20
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@functools.cache
def _umask() -> int:
    """This process's umask (read, not set: setting it would race other threads)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"Umask:"):
                return int(line.split()[1], 8)
    return 0o777  # unknown: every mode is set explicitly


def _drain(stream: BinaryIO) -> None:
    """Read what follows the archive's end (its second zero block, a tar record's padding):
    the body is read whole, so its connection can carry the next request."""
    while stream.read(_WRITE_PIECE):
        pass


def _write(fd: int, data: bytes | memoryview) -> None:
    """All of ``data`` into ``fd``."""
    done = os.write(fd, data)
    if done != len(data):
        view = memoryview(data)[done:]
        while view:
            view = view[os.write(fd, view) :]


def _place(dfd: int, staging: str, made: Unpacked, path: str, *, overwrite: bool) -> None:
    """Rename the staging directory's top-level entries into ``dfd``."""
    try:
        sfd = os.open(staging, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dfd)
    except OSError as exc:
        raise os_error(exc, path) from None
    try:
        names = sorted(os.listdir(sfd))
        for name in names:  # every name is checked before any is placed
            where = f"{path}/{name}" if path else name
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not overwrite or stat.S_ISDIR(st.st_mode):
                raise VfdError(ErrorCode.PATH_EXISTS, f"{where} already exists", path=where)
        for name in names:
            where = f"{path}/{name}" if path else name
            try:
                os.rename(name, name, src_dir_fd=sfd, dst_dir_fd=dfd)
            except OSError as exc:
                raise os_error(exc, where) from None
            made.entries.append(name)
    finally:
        os.close(sfd)


def _dir_modes(
    dfd: int, made: Unpacked, modes: dict[tuple[str, ...], tuple[int, int]], path: str
) -> None:
    """Give the unpacked directories (now below ``dfd``) their modes and mtimes, deepest
    first (so that neither a restrictive mode nor a later change gets in the way)."""
    dirs = _Dirs(dfd, made, {})
    try:
        for dparts in sorted(modes, key=len, reverse=True):
            mode, mtime = modes[dparts]
            where = "/".join([path, *dparts]) if path else "/".join(dparts)
            fd = dirs.get(list(dparts), where)
            try:
                os.chmod(f"/proc/self/fd/{fd}", mode)
                if mtime >= 0:
                    os.utime(f"/proc/self/fd/{fd}", (mtime, mtime))
            except OSError as exc:
                raise os_error(exc, where) from None
            finally:
                dirs.close()
    finally:
        dirs.close()


def unpack_tar_backing(
    fs: FolderFS, path: str, key: str, stream: BinaryIO, backing: int, budget: Budget
) -> Unpacked:
    """Unpack the tar ``stream`` into the staging directory ``.vfd-upload-<key>.part`` made
    below ``backing`` — the directory ``path`` in the backing tree, from mountd under a tree
    grant — acting as the user, within ``budget``. Removes what it made when it fails.
    Blocking. The caller settles the grant, then places the tree (:func:`place_unpacked`)."""
    staging = _part_name(key)
    made = Unpacked(entries=[], skipped=[], modes={})
    assert made.modes is not None
    with acting_as(fs.ident):
        try:
            budget.take(0, 1)
            try:
                os.mkdir(staging, 0o700, dir_fd=backing)
            except OSError as exc:
                raise os_error(exc, path) from None
            try:
                top = os.open(staging, os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY, dir_fd=backing)
            except OSError as exc:
                raise os_error(exc, path) from None
            try:
                _unpack(stream, top, made, made.modes, path, budget)
            finally:
                os.close(top)
        except BaseException:
            shutil.rmtree(staging, dir_fd=backing, ignore_errors=True)
            raise
    return made


def place_unpacked(
    fs: FolderFS, path: str, key: str, made: Unpacked, *, overwrite: bool = False
) -> None:
    """Move the staging directory's top-level entries into ``path`` through the view (so
    mountd sees the renames), give the directories their modes, remove the staging
    directory; on a refusal the staging tree is removed (through the view). Blocking."""
    staging = _part_name(key)
    parts = split_path(path)
    with fs._session() as root_fd:
        dfd = fs._walk(root_fd, parts, path)
        try:
            _place_staged(dfd, staging, made, made.modes or {}, path, overwrite=overwrite)
        finally:
            os.close(dfd)
