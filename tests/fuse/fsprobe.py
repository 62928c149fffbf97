"""Probes the FUSE conformance tests share: run code as another user, expect an errno,
snapshot a tree, recount a folder's usage.

Nothing here knows about mountd; it works on any directory, so each helper can be checked
against a native file system first.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import pickle
import stat
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

USER = (1000, 1000)
"""The unprivileged uid/gid the permission tests act as."""
OTHER = (1001, 1001)
"""A second unprivileged uid/gid: a stranger to files USER owns."""


def _errname(code: int | None) -> str:
    return errno.errorcode.get(code or 0, str(code))


@contextlib.contextmanager
def raises_errno(*codes: int) -> Iterator[None]:
    """Expect the block to raise OSError with one of ``codes``; say which errno came instead."""
    want = " or ".join(_errname(c) for c in codes)
    try:
        yield
    except OSError as exc:
        if exc.errno not in codes:
            raise AssertionError(f"expected {want}, got {_errname(exc.errno)}: {exc}") from exc
    else:
        raise AssertionError(f"expected {want}, but the call succeeded")


class ChildFailed(AssertionError):
    """The forked child raised something other than OSError; carries its traceback."""


@dataclass
class Child:
    """A forked child whose result comes back through a pipe."""

    pid: int
    fd: int

    def done(self) -> bool:
        """Whether the child has exited (it is reaped here if so)."""
        if self.pid and os.waitpid(self.pid, os.WNOHANG)[0]:
            self.pid = 0
        return self.pid == 0

    def result(self, timeout: float = 120.0) -> Any:
        """The child's return value; its OSError is re-raised here with the same errno."""
        deadline = time.monotonic() + timeout
        data = b""
        os.set_blocking(self.fd, False)
        while True:
            try:
                chunk = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                chunk = None
            if chunk:
                data += chunk
                continue
            if chunk == b"":
                break
            if time.monotonic() > deadline:
                os.kill(self.pid, 9)
                raise AssertionError(f"child {self.pid} did not finish in {timeout}s")
            time.sleep(0.01)
        os.close(self.fd)
        if self.pid:
            os.waitpid(self.pid, 0)
        kind, *payload = pickle.loads(data)
        if kind == "ok":
            return payload[0]
        if kind == "oserror":
            code, text, filename = payload
            raise OSError(code, text, filename)
        raise ChildFailed(payload[0])


def fork_call(
    fn: Callable[..., Any],
    *args: Any,
    uid: int = 0,
    gid: int = 0,
    groups: tuple[int, ...] = (),
    cwd: Path | None = None,
    chroot: Path | None = None,
    umask: int = 0o022,
) -> Child:
    """Start ``fn(*args)`` in a forked child running as ``uid:gid`` with ``groups``.

    The child changes directory (and root) *before* dropping privileges, so it can use paths
    relative to ``cwd`` even when the directories above are closed to ``uid``.
    """
    r, w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(r)
        try:
            try:
                if chroot is not None:
                    os.chroot(chroot)
                    os.chdir("/")
                if cwd is not None:
                    os.chdir(cwd)
                os.umask(umask)
                os.setgroups(list(groups))
                os.setgid(gid)
                os.setuid(uid)
                reply: tuple[Any, ...] = ("ok", fn(*args))
            except OSError as exc:
                reply = ("oserror", exc.errno, exc.strerror, exc.filename)
            except BaseException:
                reply = ("error", traceback.format_exc())
            try:
                data = pickle.dumps(reply)
            except Exception:
                data = pickle.dumps(("error", traceback.format_exc()))
            _write_all(w, data)
        finally:
            os._exit(0)
    os.close(w)
    return Child(pid, r)


def _write_all(fd: int, data: bytes) -> None:  # pragma: no cover - child
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def run_as(ids: tuple[int, int], fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """Run ``fn(*args)`` as ``ids`` (uid, gid) in a forked child and return its result."""
    return fork_call(fn, *args, uid=ids[0], gid=ids[1], **kw).result()


# -- renameat2 ---------------------------------------------------------------------------

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_libc = ctypes.CDLL(None, use_errno=True)


def renameat2(src: os.PathLike[str] | str, dst: os.PathLike[str] | str, flags: int) -> None:
    """``renameat2(2)``, which the os module lacks."""
    rc = _libc.renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags)
    if rc != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), os.fspath(src))


# -- trees -------------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry under ``root`` (root included) with its metadata and content, no atime.

    Symlinks are recorded by target and never followed; ctime is included, so a chmod or a
    link that was undone still shows.
    """
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [".", *dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    content: Any = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            else:
                content = None
            try:
                xattrs = tuple(
                    sorted(
                        (k, os.getxattr(path, k, follow_symlinks=False))
                        for k in os.listxattr(path, follow_symlinks=False)
                    )
                )
            except OSError:
                xattrs = ()
            key = os.path.normpath(os.path.relpath(path, root))
            out[key] = (
                st.st_mode,
                st.st_uid,
                st.st_gid,
                st.st_size,
                st.st_nlink,
                st.st_rdev,
                st.st_mtime_ns,
                st.st_ctime_ns,
                content,
                xattrs,
            )
    return out


def recount(*roots: Path) -> tuple[int, int]:
    """(bytes, files) of the trees under ``roots`` as quota counts them.

    Bytes are the apparent sizes of regular files; files are inodes other than the roots
    themselves (directories, symlinks, fifos included); an inode with several hard links
    counts once. Computed independently of mountd so it can check mountd's counters.
    """
    seen: set[tuple[int, int]] = set()
    size = files = 0
    for root in roots:
        root_st = os.lstat(root)
        seen.add((root_st.st_dev, root_st.st_ino))
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                st = os.lstat(os.path.join(dirpath, name))
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
                files += 1
                if stat.S_ISREG(st.st_mode):
                    size += st.st_size
    return size, files


def wait_for(
    predicate: Callable[[], bool],
    *,
    timeout: float = 10.0,
    what: str | Callable[[], str] = "",
) -> None:
    """Poll ``predicate`` until it holds; fail with ``what`` after ``timeout`` seconds
    (a callable ``what`` is asked at that moment, so it can show the last value seen)."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while not predicate():
        if time.monotonic() > deadline:
            text = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout}s waiting for {text or predicate}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


OLD_NS = 1_000_000_000_000_000_000
"""A timestamp in 2001: set on an entry so that a later update is unmistakable."""


def make_dir(path: Path, ids: tuple[int, int] = (0, 0), mode: int = 0o755) -> Path:
    """mkdir ``path`` owned by ``ids`` with exactly ``mode`` (umask and setgid ignored)."""
    path.mkdir()
    os.chown(path, *ids)
    os.chmod(path, mode)
    return path


def make_file(
    path: Path, ids: tuple[int, int] = (0, 0), mode: int = 0o644, data: bytes = b""
) -> Path:
    """Create ``path`` with ``data``, owned by ``ids``, with exactly ``mode``."""
    path.write_bytes(data)
    os.chown(path, *ids)
    os.chmod(path, mode)
    return path


def settle(path: Path) -> os.stat_result:
    """Back-date ``path``'s atime/mtime and wait until the clock has passed its ctime.

    File times come from a coarse clock; after this, any change to the entry's mtime or ctime
    shows as a strictly larger value. Returns the entry's stat after the back-dating.
    """
    os.utime(path, ns=(OLD_NS, OLD_NS))
    st = os.stat(path)
    wait_for(lambda: time.time_ns() > st.st_ctime_ns + 30_000_000, what="the clock to tick")
    return st
