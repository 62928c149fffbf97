"""Copying one folder's backing tree into another's: the work behind ``vfd vfolder clone``.

The walk never leaves the source tree: every directory is opened with ``O_NOFOLLOW`` relative
to its parent's descriptor and every entry is reached with ``*at()`` calls, so a symbolic link
in the source — whatever it points at — is copied as a link and never followed, and a
directory swapped for a link while the copy runs is refused rather than entered.

What is copied: directories, regular files (data, with holes kept), symbolic links, FIFOs,
sockets and device nodes; their modes, user extended attributes and modification times. Hard
links within the source stay hard links. Everything is owned by ``uid:gid`` (the new folder's
owner), whoever owned it in the source.

File data is copied by the cheapest means the file systems offer: a reflink (``FICLONE``)
first, then ``copy_file_range``, then plain reads and writes; a method the file systems refuse
once is not tried again.

Every byte and inode is charged before it is stored through ``charge(bytes, files)``, which may
refuse (mountd's quota check: the copy then fails with what it raised), and given back with
negative amounts when a store failed. Charges follow ``vfd.folders.quota``: regular files count
their apparent size, every inode counts once (a hard link's further names add nothing).

Blocking: run it in a worker thread. ``check()`` is called before each entry and each chunk
of data; it stops the copy by raising.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

FICLONE = 0x40049409
"""``_IOW(0x94, 9, int)`` from ``linux/fs.h``: share the source file's extents (a reflink)."""
CHUNK = 64 << 20
"""Bytes charged and copied per step: a lowered limit or a cancel takes effect within one."""
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_UNSUPPORTED = frozenset(
    {errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EBADF}
)
"""What a file system answers to a copy method it does not have."""
_GONE = (FileNotFoundError, NotADirectoryError)
"""A source entry removed (or replaced) while the copy runs: it is skipped."""

Charge = Callable[[int, int], None]
T = TypeVar("T")


@dataclass
class Progress:
    """What is copied so far: bytes (apparent sizes) and inodes, as charged."""

    bytes: int = 0
    files: int = 0
    methods: dict[str, int] = field(default_factory=dict)
    """Files whose data went by each method (``reflink``, ``copy_file_range``, ``readwrite``)."""


class _Copier:
    def __init__(
        self, *, uid: int, gid: int, charge: Charge, check: Callable[[], None], progress: Progress
    ) -> None:
        self.uid = uid
        self.gid = gid
        self._charge = charge
        self.check = check
        self.progress = progress
        self.reflink = True
        self.copy_range = True
        self.links: dict[tuple[int, int], str] = {}
        """Source (dev, ino) of a file with several links -> its first copy (relative path)."""
        self.dst_root = -1

    def charge(self, nbytes: int, files: int) -> None:
        self._charge(nbytes, files)
        self.progress.bytes += nbytes
        self.progress.files += files

    def _create(self, make: Callable[[], T]) -> T:
        """Charge one inode, then make it; the charge is given back if making it fails."""
        self.charge(0, 1)
        try:
            return make()
        except BaseException:
            self.charge(0, -1)
            raise

    # -- the walk ----------------------------------------------------------------------------

    def copy_tree(self, src_root: int, dst_root: int) -> None:
        """Copy the entries below ``src_root`` into ``dst_root`` (both directory fds)."""
        self.dst_root = dst_root
        stack: list[tuple[int, int, list[str], str, os.stat_result | None]] = [
            (src_root, dst_root, _names(src_root), "", None)
        ]
        try:
            while stack:
                sfd, dfd, names, rel, st = stack[-1]
                if not names:
                    stack.pop()
                    try:
                        if st is not None:
                            _copy_xattrs(sfd, dfd)
                            self._finish(dfd, st)
                    finally:
                        if st is not None:
                            os.close(sfd)
                            os.close(dfd)
                    continue
                name = names.pop()
                self.check()
                child = self._copy_entry(sfd, dfd, name, f"{rel}{name}")
                if child is not None:
                    stack.append(child)
        finally:
            for sfd, dfd, _, _, st in stack:
                if st is not None:
                    os.close(sfd)
                    os.close(dfd)

    def _copy_entry(
        self, sfd: int, dfd: int, name: str, rel: str
    ) -> tuple[int, int, list[str], str, os.stat_result] | None:
        """Copy one entry; a directory is made and returned to be walked."""
        try:
            st = os.stat(name, dir_fd=sfd, follow_symlinks=False)
        except _GONE:
            return None
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            return self._enter_dir(sfd, dfd, name, rel, st)
        if stat.S_ISREG(mode):
            self._copy_file(sfd, dfd, name, rel, st)
        elif stat.S_ISLNK(mode):
            try:
                target = os.readlink(name, dir_fd=sfd)
            except _GONE:
                return None
            self._create(lambda: os.symlink(target, name, dir_fd=dfd))
            os.chown(name, self.uid, self.gid, dir_fd=dfd, follow_symlinks=False)
            os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dfd, follow_symlinks=False)
        else:
            self._create(lambda: os.mknod(name, mode, st.st_rdev, dir_fd=dfd))
            os.chown(name, self.uid, self.gid, dir_fd=dfd, follow_symlinks=False)
            os.chmod(name, stat.S_IMODE(mode), dir_fd=dfd)  # a node just made: not a link
            os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dfd)
        return None

    def _enter_dir(
        self, sfd: int, dfd: int, name: str, rel: str, st: os.stat_result
    ) -> tuple[int, int, list[str], str, os.stat_result] | None:
        try:
            child_src = os.open(name, _DIR_FLAGS, dir_fd=sfd)
        except _GONE:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # became a link since the stat: not followed
                return None
            raise
        try:
            if os.fstat(child_src).st_ino != st.st_ino:
                os.close(child_src)
                return None
            names = _names(child_src)
            self._create(lambda: os.mkdir(name, 0o700, dir_fd=dfd))  # opened up once filled
            child_dst = os.open(name, _DIR_FLAGS, dir_fd=dfd)
        except BaseException:
            os.close(child_src)
            raise
        return child_src, child_dst, names, f"{rel}/", st

    def _finish(self, fd: int, st: os.stat_result) -> None:
        """Owner, mode, xattrs and times of a copied directory or file (on its fd)."""
        os.fchown(fd, self.uid, self.gid)
        os.fchmod(fd, stat.S_IMODE(st.st_mode))  # after chown, which drops set-id bits
        os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))

    # -- files -------------------------------------------------------------------------------

    def _copy_file(self, sfd: int, dfd: int, name: str, rel: str, st: os.stat_result) -> None:
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in self.links:
            os.link(
                self.links[key],
                name,
                src_dir_fd=self.dst_root,
                dst_dir_fd=dfd,
                follow_symlinks=False,
            )
            return
        try:
            # O_NONBLOCK: should a FIFO have replaced the file since the stat, the open must
            # not wait for a writer (reads of regular files ignore the flag)
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
            src = os.open(name, flags, dir_fd=sfd)
        except _GONE:
            return
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return  # became a link since the stat
            raise
        try:
            st = os.fstat(src)
            if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != key:
                return  # replaced since the stat
            dst = self._create(
                lambda: os.open(
                    name,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                    0o600,
                    dir_fd=dfd,
                )
            )
            try:
                self._copy_data(src, dst, st.st_size)
                _copy_xattrs(src, dst)
                self._finish(dst, st)
            finally:
                os.close(dst)
        finally:
            os.close(src)
        if st.st_nlink > 1:
            self.links[key] = rel

    def _copy_data(self, src: int, dst: int, size: int) -> None:
        """Copy ``size`` bytes (holes stay holes), charging growth before each step."""
        charged = 0

        def grow(to: int) -> None:
            nonlocal charged
            if to > charged:
                self.charge(to - charged, 0)
                charged = to

        try:
            if size and self.reflink:
                grow(size)
                try:
                    fcntl.ioctl(dst, FICLONE, src)
                except OSError as exc:
                    if exc.errno not in _UNSUPPORTED:
                        raise
                    self.reflink = False
                    self.charge(-charged, 0)
                    charged = 0
                else:
                    self._count("reflink")
                    return
            for start, end in _extents(src, size):
                pos = start
                while pos < end:
                    self.check()
                    step = min(CHUNK, end - pos)
                    grow(pos + step)
                    done = self._copy_range(src, dst, pos, step)
                    if done == 0:
                        break  # the source shrank while we copied: the rest reads as zeros
                    pos += done
            grow(size)
            os.ftruncate(dst, size)
            self._count("copy_file_range" if self.copy_range else "readwrite")
        except BaseException:
            stored = os.fstat(dst).st_size
            if charged > stored:
                self.charge(stored - charged, 0)
            raise

    def _copy_range(self, src: int, dst: int, pos: int, count: int) -> int:
        """Copy up to ``count`` bytes at ``pos``; how many were copied (0: end of the source)."""
        done = 0
        while done < count:
            if self.copy_range:
                try:
                    n = os.copy_file_range(src, dst, count - done, pos + done, pos + done)
                except OSError as exc:
                    if exc.errno not in _UNSUPPORTED or done:
                        raise
                    self.copy_range = False
                    continue
            else:
                data = os.pread(src, min(count - done, 1 << 20), pos + done)
                n = len(data)
                view = memoryview(data)
                while view:
                    w = os.pwrite(dst, view, pos + done + len(data) - len(view))
                    view = view[w:]
            if n == 0:
                break
            done += n
        return done

    def _count(self, method: str) -> None:
        self.progress.methods[method] = self.progress.methods.get(method, 0) + 1


def _names(fd: int) -> list[str]:
    """The entries of a directory, sorted in reverse (popped from the end: in order)."""
    with os.scandir(fd) as it:
        return sorted((e.name for e in it), reverse=True)


def _extents(fd: int, size: int) -> list[tuple[int, int]]:
    """The data extents of the first ``size`` bytes of a file (one, where holes are unknown)."""
    out: list[tuple[int, int]] = []
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                break  # only a hole is left
            if exc.errno in _UNSUPPORTED:
                return [(0, size)]
            raise
        if start >= size:
            break
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        out.append((start, end))
        pos = end
    return out


def _copy_xattrs(src: int, dst: int) -> None:
    """The user extended attributes (the only ones the mount passes through)."""
    try:
        names = os.listxattr(src)
    except OSError as exc:
        if exc.errno in _UNSUPPORTED:
            return
        raise
    for key in names:
        if key.startswith("user."):
            try:
                os.setxattr(dst, key, os.getxattr(src, key))
            except OSError as exc:
                if exc.errno not in (*_UNSUPPORTED, errno.ENODATA):
                    raise


def copy_tree(
    src_root: int,
    dst_root: int,
    *,
    uid: int,
    gid: int,
    charge: Charge,
    check: Callable[[], None],
    progress: Progress,
) -> None:
    """Copy everything below directory fd ``src_root`` into the empty directory fd
    ``dst_root``, owned by ``uid:gid``; the roots themselves keep their own owner and mode
    (the new root also takes the source root's user xattrs).

    Raises what ``charge`` or ``check`` raised, or the ``OSError`` of a failed store; what was
    copied until then stays (the caller removes it) and stays charged.
    """
    copier = _Copier(uid=uid, gid=gid, charge=charge, check=check, progress=progress)
    copier.copy_tree(src_root, dst_root)
    _copy_xattrs(src_root, dst_root)
