"""The directories vfd keeps its store, sockets, mount and storage hosts in: made with explicit
modes, and refused or repaired when any local user could replace what is in them.

vfd runs as root and trusts what it finds in these directories: its store, the API socket
clients connect to, mountd's control socket, the folders' backing trees. A directory writable
by every user without the sticky bit lets anyone rename those away and put their own in their
place, so:

- every directory vfd creates gets its mode from a ``chmod`` after ``mkdir``, never from the
  process umask (mountd serves with umask 0);
- a directory vfd uses (the state directory, a socket's directory, the store's directory, the
  mount point, a host root) that is world-writable without the sticky bit is tightened to the
  mode vfd would create it with, and a warning is logged;
- an ancestor of one that is world-writable without the sticky bit (``/tmp`` has it, and is
  fine) is not vfd's to change: vfd refuses to start, naming it (``config_invalid``).

The modes are those of ``systemd/vfd.tmpfiles.conf``.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

from vfd.config import Config
from vfd.errors import ErrorCode, VfdError

log = logging.getLogger(__name__)

STATE_DIR_MODE = 0o755
"""A ``--state-dir`` directory: its ``run/vfd.sock`` must be reachable by every local user."""
PRIVATE_DIR_MODE = 0o700
"""The store's directory (``/var/lib/vfd``), ``hosts/``, and missing parents of private
directories."""
SOCKET_DIR_MODE = 0o755
"""A socket's directory (``/run/vfd``): reachable, writable by root alone."""
MOUNT_POINT_MODE = 0o755
HOST_ROOT_MODE = 0o711
STORE_FILE_MODE = 0o600


def is_unsafe(st: os.stat_result) -> bool:
    """Whether any local user may rename entries of the directory ``st`` describes."""
    mode = st.st_mode
    return bool(mode & stat.S_IWOTH) and not mode & stat.S_ISVTX


def _refuse(path: Path, ancestor: Path, mode: int) -> VfdError:
    return VfdError(
        ErrorCode.CONFIG_INVALID,
        f"{ancestor} is writable by every user (mode {mode:04o}, no sticky bit), so anyone could "
        f"replace {path}; make it safe (chmod o-w {ancestor}, or chmod +t) or choose another "
        "path",
        path=str(path),
        directory=str(ancestor),
    )


def ensure_dir(path: Path, mode: int, *, parent_mode: int = PRIVATE_DIR_MODE) -> Path:
    """Make ``path`` a directory safe from other users and return it.

    Missing components are created with ``parent_mode`` (``path`` itself with ``mode``), both
    set by chmod, whatever the umask. An existing ``path`` that is world-writable without the
    sticky bit is tightened to ``mode``; such an existing ancestor raises ``config_invalid``.
    Something else than a directory in the way raises ``NotADirectoryError``.
    """
    path = Path(os.path.abspath(path))
    chain = [*reversed(path.parents), path]
    for component in chain:
        try:
            st = os.stat(component)
        except FileNotFoundError:
            try:
                os.mkdir(component, 0o700)
            except FileExistsError:  # made meanwhile by someone else: check it
                st = os.stat(component)
            else:
                os.chmod(component, mode if component == path else parent_mode)
                continue
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(component))
        if is_unsafe(st):
            if component != path:
                raise _refuse(path, component, stat.S_IMODE(st.st_mode))
            log.warning(
                "%s was writable by every user (mode %04o); tightening it to %04o",
                component,
                stat.S_IMODE(st.st_mode),
                mode,
            )
            os.chmod(component, mode)
    return path


def ensure_socket_dir(socket_path: Path) -> Path:
    """Make the directory of a unix socket: reachable by every user, writable by root alone
    (the API socket is 0666, mountd's 0600; identity comes from SO_PEERCRED)."""
    return ensure_dir(socket_path.parent, SOCKET_DIR_MODE, parent_mode=SOCKET_DIR_MODE)


def ensure_private_file(path: Path, mode: int = STORE_FILE_MODE) -> None:
    """Create ``path`` empty with ``mode`` unless it exists; tighten it to ``mode`` when any
    user may read or write it (a group the administrator chose is left alone). For the
    SQLite store: its ``-wal`` and ``-shm`` files take its mode."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            try:
                st = os.lstat(candidate)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_mode & stat.S_IRWXO:
                log.warning(
                    "%s was open to every user (mode %04o); tightening it to %04o",
                    candidate,
                    stat.S_IMODE(st.st_mode),
                    mode,
                )
                os.chmod(candidate, mode)
        return
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def prepare_state_dir(config: Config) -> None:
    """Make the ``--state-dir`` directory (when one is used) before anything goes in it."""
    if config.state_dir is not None:
        ensure_dir(config.state_dir, STATE_DIR_MODE, parent_mode=STATE_DIR_MODE)
