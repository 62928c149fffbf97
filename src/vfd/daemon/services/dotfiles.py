"""Dotfiles: small files a user, a project's administrators or the cluster's keep in the store,
written into ``/home/work`` of every session they apply to when it starts.

Three scopes, from the widest: ``cluster`` (every session; administrators write, everyone
reads), ``project`` (the sessions of the project's members; administrators write, members
read) and ``user`` (the owner's sessions). A session gets the cluster's, then its user's
projects', then the user's own; a narrower scope's file replaces a wider one's of the same path.

Paths are relative to ``/home/work`` (:func:`normalize_path`); a few are vfd's own and refused
(:data:`RESERVED_PATHS`), as is a path under one of the user's automount folders, which a
mount would hide. See docs/dotfiles.md.
"""

from __future__ import annotations

import base64
import binascii
import errno
import os
import re
import stat
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sqlmodel import Session, col, select

from vfd.errors import ErrorCode, VfdError
from vfd.folders.names import unshown
from vfd.store.models import (
    Dotfile,
    Project,
    ProjectMember,
    User,
)

HOME = "/home/work"
MAX_PATH_BYTES = 256
DEFAULT_MODE = 0o644
RESERVED_PATHS = frozenset({".ssh/authorized_keys", ".ssh/id_container", ".ssh/id_container.pub"})
"""Files vfd itself writes into a session's home (the SSH access of sessions)."""
RESERVED_DIRS = frozenset({".vfd"})
"""Directories of ``/home/work`` that belong to vfd: nothing under them may be a dotfile."""
_MODE = re.compile(r"^[0-7]{3,4}$")


@dataclass(frozen=True)
class DotfileEntry:
    """One file to write into a session's home: ``path`` relative to it, its mode, its bytes."""

    path: str
    mode: int
    data: bytes


# ---------------------------------------------------------------------------- input rules


def normalize_path(raw: str) -> str:
    """``raw`` as a path relative to ``/home/work``, or ``invalid_path`` saying why not.

    A leading ``/home/work/`` or ``~/`` is stripped; any other absolute path, an empty, ``.``
    or ``..`` component, NUL or a character that does not show as itself, or more than
    :data:`MAX_PATH_BYTES` bytes is refused.
    """

    def bad(why: str) -> VfdError:
        return VfdError(ErrorCode.INVALID_PATH, f"dotfile path {raw!r}: {why}", path=raw)

    path = raw
    for prefix in (HOME + "/", "~/"):
        if path.startswith(prefix):
            path = path[len(prefix) :]
            break
    if not path:
        raise bad("it names no file")
    if path.startswith("/") or path.startswith("~"):
        raise bad(f"an absolute path must be under {HOME}")
    if "\x00" in path:
        raise bad("it contains NUL")
    if (char := unshown(path)) is not None:
        raise bad(f"it contains {char} (control or format characters are not allowed)")
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError:
        raise bad("it is not valid Unicode text") from None
    if size > MAX_PATH_BYTES:
        raise bad(f"it has {size} bytes; at most {MAX_PATH_BYTES} are allowed")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise bad("empty, '.' and '..' components are not allowed")
    return path


def check_reserved(path: str, automounts: Collection[str] = ()) -> None:
    """``reserved_name`` when ``path`` is vfd's own or lies under one of ``automounts`` (the
    owner's automount folder names, mounted over ``/home/work/NAME``)."""
    first = path.split("/", 1)[0]
    if path in RESERVED_PATHS or first in RESERVED_DIRS:
        raise VfdError(
            ErrorCode.RESERVED_NAME, f"{path!r} is reserved for vfd's own files", path=path
        )
    if first in automounts:
        raise VfdError(
            ErrorCode.RESERVED_NAME,
            f"{path!r} would be hidden by your automount folder {first!r}, mounted at "
            f"{HOME}/{first}; put the file into that folder instead",
            path=path,
            folder=first,
        )


def parse_mode(text: str) -> int:
    """An octal permission string (``"644"``, ``"0755"``) as an int; ``invalid_argument`` for
    anything else, setuid, setgid and sticky bits included."""
    if not _MODE.match(text):
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT,
            f"mode {text!r} is not an octal permission such as 644 or 0755",
            field="mode",
        )
    mode = int(text, 8)
    if mode & ~0o777:
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT,
            f"mode {text!r} has setuid, setgid or sticky bits; only permission bits are allowed",
            field="mode",
        )
    return mode


def decode_data(text: str, max_size: int) -> bytes:
    """The bytes of base64 ``text``; ``invalid_argument`` when it is not base64,
    ``dotfile_limit_reached`` when they are more than ``max_size``."""
    if len(text) > 4 * ((max_size + 2) // 3):
        raise _too_big((len(text) // 4) * 3, max_size)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT, "data is not valid base64", field="data"
        ) from None
    if len(data) > max_size:
        raise _too_big(len(data), max_size)
    return data


def _too_big(size: int, max_size: int) -> VfdError:
    return VfdError(
        ErrorCode.DOTFILE_LIMIT_REACHED,
        f"a dotfile may hold at most {max_size} bytes ([sessions] dotfile_max_size); "
        f"this one has {size}",
        limit="size",
        max=max_size,
        size=size,
    )


# ---------------------------------------------------------------------------- sessions


def for_session(
    session: Session, user: User, *, mount_targets: Collection[str] = ()
) -> list[DotfileEntry]:
    """The dotfiles of a session of ``user``: the cluster's, then those of the user's projects
    (by project name), then the user's own; a later one replaces an earlier one of the same
    path. A file that would be a directory of another (``a`` and ``a/b``) yields to the
    narrower scope's. Files at, under or above one of ``mount_targets`` (absolute paths in the
    container) are left out: the mount would hide them or could not be made.
    """
    projects = session.exec(
        select(Project)
        .where(ProjectMember.user_id == user.id, ProjectMember.project_id == Project.id)
        .order_by(col(Project.name))
    ).all()
    layers = ["cluster", *(f"project:{p.id.hex}" for p in projects), f"user:{user.id.hex}"]
    rank = {scope: i for i, scope in enumerate(layers)}
    rows = session.exec(select(Dotfile).where(col(Dotfile.scope).in_(layers))).all()
    chosen: dict[str, Dotfile] = {}
    for row in sorted(rows, key=lambda r: rank[r.scope]):
        chosen[row.path] = row
    kept: list[Dotfile] = []
    for row in sorted(chosen.values(), key=lambda r: -rank[r.scope]):
        if not any(_nested(row.path, other.path) for other in kept):
            kept.append(row)
    hidden = [_under_home(t) for t in mount_targets]
    return [
        DotfileEntry(path=row.path, mode=row.mode, data=bytes(row.data))
        for row in sorted(kept, key=lambda r: r.path)
        if not any(h is not None and (h == row.path or _nested(row.path, h)) for h in hidden)
    ]


def _nested(a: str, b: str) -> bool:
    """Whether one of the two paths is a directory of the other."""
    return a.startswith(b + "/") or b.startswith(a + "/")


def _under_home(target: str) -> str | None:
    """A container path relative to ``/home/work`` ("" for itself), None when outside it."""
    if target.rstrip("/") == HOME:
        return ""
    return target[len(HOME) + 1 :].rstrip("/") if target.startswith(HOME + "/") else None


def write_into(workdir_fd: int, entries: Sequence[DotfileEntry], uid: int, gid: int) -> None:
    """Write ``entries`` under the directory ``workdir_fd`` (a session's fresh home), each with
    its exact mode and owned by ``uid:gid``; missing directories are made 0755, owned the same.

    Blocking (run it in a worker thread). Every name is opened relative to its parent's fd
    with ``O_NOFOLLOW``, files with ``O_CREAT | O_EXCL``: a symbolic link or an existing file
    in the way fails the call (``path_exists``, ``not_a_directory``) instead of being followed
    or overwritten. A file whose write fails is removed again.
    """
    for entry in entries:
        *dirs, name = entry.path.split("/")
        parent = os.dup(workdir_fd)
        try:
            for part in dirs:
                child = _enter(parent, part, uid, gid, entry.path)
                os.close(parent)
                parent = child
            _write_file(parent, name, entry, uid, gid)
        finally:
            os.close(parent)


def _enter(parent: int, name: str, uid: int, gid: int, path: str) -> int:
    """The fd of directory ``name`` in ``parent``, made 0755 and ``uid:gid`` if missing."""
    made = True
    try:
        os.mkdir(name, 0o755, dir_fd=parent)
    except FileExistsError:
        made = False
    except OSError as exc:
        raise _write_error(path, exc) from None
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=parent)
    except OSError as exc:
        raise _write_error(path, exc) from None
    try:
        if made:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, 0o755)
    except OSError as exc:
        os.close(fd)
        raise _write_error(path, exc) from None
    return fd


def _write_file(parent: int, name: str, entry: DotfileEntry, uid: int, gid: int) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, 0o600, dir_fd=parent)
    except OSError as exc:
        raise _write_error(entry.path, exc) from None
    try:
        view = memoryview(entry.data)
        while view:
            view = view[os.write(fd, view) :]
        os.fchown(fd, uid, gid)
        os.fchmod(fd, stat.S_IMODE(entry.mode))
    except OSError as exc:
        os.unlink(name, dir_fd=parent)
        raise _write_error(entry.path, exc) from None
    finally:
        os.close(fd)


def _write_error(path: str, exc: OSError) -> VfdError:
    code = {
        errno.EEXIST: ErrorCode.PATH_EXISTS,
        errno.ENOTDIR: ErrorCode.NOT_A_DIRECTORY,
        errno.ELOOP: ErrorCode.NOT_A_DIRECTORY,
    }.get(exc.errno or 0, ErrorCode.INTERNAL)
    why = exc.strerror or str(exc)
    return VfdError(code, f"cannot write dotfile {path!r} into {HOME}: {why}", path=path)
