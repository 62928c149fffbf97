"""Each session's directory on the host: ``<scratch_dir>/<session id hex>/``, holding ``work``
(bind-mounted as the container's ``/home/work``, owned by the session's uid) and ``output``
(the container's output, saved when it ends so that ``vfd session logs`` works after the
container is removed).

The session's user owns ``work`` and may plant anything in it — symlinks to ``/etc`` included —
so everything here goes through directory file descriptors with ``O_NOFOLLOW``: the scratch
root and each session directory are root's (0711, no one else may rename in them), and the
removal walks ``work`` fd-relative, never following a link the user made.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import uuid
from pathlib import Path

from vfd import safedirs
from vfd.config import Config

ROOT_MODE = 0o711
WORK_MODE = 0o755
WORK = "work"
OUTPUT = "output"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def scratch_root(config: Config) -> Path:
    """Where session directories are made: ``[sessions] scratch_dir`` or ``<state>/sessions``."""
    if config.sessions.scratch_dir is not None:
        return Path(config.sessions.scratch_dir)
    base = config.state_dir if config.state_dir is not None else Path("/var/lib/vfd")
    return base / "sessions"


def session_dir(config: Config, session_id: uuid.UUID) -> Path:
    return scratch_root(config) / session_id.hex


def work_dir(config: Config, session_id: uuid.UUID) -> Path:
    """The host path bind-mounted at the container's ``/home/work``."""
    return session_dir(config, session_id) / WORK


def output_path(config: Config, session_id: uuid.UUID) -> Path:
    return session_dir(config, session_id) / OUTPUT


def open_session_dir(config: Config, session_id: uuid.UUID, *, create: bool) -> int:
    """A directory fd of the session's root-owned directory (made 0711 when ``create``)."""
    root = safedirs.ensure_dir(scratch_root(config), ROOT_MODE, parent_mode=ROOT_MODE)
    root_fd = os.open(root, _DIR_FLAGS)
    try:
        name = session_id.hex
        if create:
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o700, dir_fd=root_fd)
        fd = os.open(name, _DIR_FLAGS, dir_fd=root_fd)
    finally:
        os.close(root_fd)
    try:
        st = os.fstat(fd)
        if st.st_uid != 0 and os.geteuid() == 0:
            raise PermissionError(errno.EPERM, f"{root / name} is not owned by root")
        os.fchmod(fd, ROOT_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def make_work(config: Config, session_id: uuid.UUID, uid: int, gid: int) -> int:
    """Make the session's ``work`` directory, owned by ``uid:gid`` (0755), fresh: whatever an
    earlier attempt left is removed first. Returns a directory fd of it (the caller closes it),
    so dotfiles are written through it without a path lookup."""
    parent = open_session_dir(config, session_id, create=True)
    try:
        _remove_entry(parent, WORK)
        os.mkdir(WORK, 0o700, dir_fd=parent)
        fd = os.open(WORK, _DIR_FLAGS, dir_fd=parent)
        try:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, WORK_MODE)
        except BaseException:
            os.close(fd)
            raise
        return fd
    finally:
        os.close(parent)


def remove_work(config: Config, session_id: uuid.UUID) -> None:
    """Remove the session's ``work`` directory and all in it (its saved output stays)."""
    try:
        parent = open_session_dir(config, session_id, create=False)
    except FileNotFoundError:
        return
    try:
        _remove_entry(parent, WORK)
    finally:
        os.close(parent)


def remove_all(config: Config, session_id: uuid.UUID) -> None:
    """Remove the session's whole directory (work and saved output)."""
    root = scratch_root(config)
    try:
        root_fd = os.open(root, _DIR_FLAGS)
    except FileNotFoundError:
        return
    try:
        _remove_entry(root_fd, session_id.hex)
    finally:
        os.close(root_fd)


def _remove_entry(dir_fd: int, name: str) -> None:
    """Remove ``name`` in ``dir_fd``: a directory recursively (fd-relative, never following a
    symlink), anything else unlinked. Missing is fine."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=dir_fd)
        return
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):  # swapped for a link meanwhile
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=dir_fd)
            return
        if exc.errno == errno.ENOENT:
            return
        raise
    try:
        for entry in os.listdir(fd):
            _remove_entry(fd, entry)
    finally:
        os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(name, dir_fd=dir_fd)
