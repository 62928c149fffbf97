"""Dotfiles: small files that users, and administrators for a project or the whole cluster,
keep in the store; written into ``/home/work`` of the sessions they apply to when they start.

Three scopes, from the widest: ``cluster`` (every session; administrators write, everyone
reads), ``project`` (the sessions of the project's members; administrators write, members
read) and ``user`` (the owner's sessions). A session gets the cluster's, then its user's
projects', then the user's own; a narrower scope's file replaces a wider one's of the same path.

What a request may hold is checked in :mod:`vfd.daemon.services.dotfile_rules`; here a user's
dotfile under one of their automount folders is refused too (the mount would hide it). See
docs/dotfiles.md.
"""

from __future__ import annotations

import base64
import errno
import os
import stat
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from vfd.daemon.services import audit
from vfd.daemon.services.context import Caller, Daemon
from vfd.daemon.services.dotfile_rules import (
    DEFAULT_MODE,
    check_reserved,
    decode_data,
    normalize_path,
    parse_mode,
)
from vfd.daemon.services.projects import find_project, is_member
from vfd.daemon.services.render import timestamp
from vfd.errors import ErrorCode, VfdError
from vfd.folders.names import is_automount
from vfd.sessions.mounts import HOME
from vfd.store.models import (
    Dotfile,
    DotfileScope,
    Ownership,
    Project,
    ProjectMember,
    User,
    VFolder,
    VFolderStatus,
    utcnow,
)

_GONE = (VFolderStatus.DELETE_COMPLETE, VFolderStatus.DELETE_ONGOING)


@dataclass(frozen=True)
class DotfileEntry:
    """One file to write into a session's home: ``path`` relative to it, its mode, its bytes."""

    path: str
    mode: int
    data: bytes


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
        parent = _open_dirs(workdir_fd, dirs, uid, gid, entry.path)
        try:
            _write_file(parent, name, entry, uid, gid)
        finally:
            os.close(parent)


def make_mount_parents(workdir_fd: int, targets: Sequence[str], uid: int, gid: int) -> None:
    """Make the directories above each of ``targets`` (container paths) that lie under
    ``/home/work`` in the home ``workdir_fd``, 0755 and owned by ``uid:gid``: docker would make
    them root's, so ``-m f1:in/data`` left ``/home/work/in`` unwritable for the session's user.

    Blocking (run it in a worker thread); the same ``O_NOFOLLOW`` walk as :func:`write_into`.
    """
    for target in targets:
        relative = _under_home(target)
        if not relative:
            continue
        *dirs, _ = relative.split("/")
        os.close(_open_dirs(workdir_fd, dirs, uid, gid, relative))


def _open_dirs(workdir_fd: int, dirs: Sequence[str], uid: int, gid: int, path: str) -> int:
    """The fd of the directory ``dirs`` (names from ``workdir_fd`` down), each entered with
    :func:`_enter`; the caller closes it."""
    parent = os.dup(workdir_fd)
    try:
        for part in dirs:
            child = _enter(parent, part, uid, gid, path)
            os.close(parent)
            parent = child
    except BaseException:
        os.close(parent)
        raise
    return parent


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


# ---------------------------------------------------------------------------- the API


@dataclass(frozen=True)
class _Scope:
    """Where a request's dotfiles live: the scope's kind, its stored key, and its project."""

    kind: DotfileScope
    key: str
    project: Project | None


def _scope(
    session: Session,
    caller: Caller,
    kind: DotfileScope | None,
    project: str | None,
    *,
    write: bool,
) -> _Scope:
    """Resolve ``kind``/``project`` (a project alone means the project scope) and check that the
    caller may read, or ``write``, its dotfiles."""
    if kind is None:
        kind = DotfileScope.PROJECT if project is not None else DotfileScope.USER
    if kind is not DotfileScope.PROJECT:
        if project is not None:
            raise VfdError(
                ErrorCode.INVALID_ARGUMENT,
                f"a project is named only with the project scope, not {kind.value}",
                field="project",
            )
        if kind is DotfileScope.USER:
            return _Scope(kind, f"user:{caller.user.id.hex}", None)
        if write:
            caller.require_admin()
        return _Scope(kind, "cluster", None)
    if project is None:
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT, "the project scope needs a project name", field="project"
        )
    row = find_project(session, project)
    if write:
        caller.require_admin()
    elif not caller.is_admin and not is_member(session, row, caller.user):
        raise VfdError(
            ErrorCode.PERMISSION_DENIED,
            f"you are not a member of project {project!r}",
            project=project,
        )
    return _Scope(kind, f"project:{row.id.hex}", row)


def _json(row: Dotfile, where: _Scope, *, data: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "path": row.path,
        "mode": f"{row.mode:03o}",
        "size": len(row.data),
        "scope": where.kind.value,
        "project": where.project.name if where.project is not None else None,
        "updated_at": timestamp(row.updated_at),
    }
    if data:
        out["data"] = base64.b64encode(row.data).decode("ascii")
    return out


def _find(session: Session, where: _Scope, path: str) -> Dotfile:
    row = session.exec(
        select(Dotfile).where(Dotfile.scope == where.key, Dotfile.path == path)
    ).first()
    if row is None:
        raise VfdError(
            ErrorCode.DOTFILE_NOT_FOUND,
            f"no {where.kind.value} dotfile {path!r}",
            path=path,
            scope=where.kind.value,
        )
    return row


def _automounts(session: Session, user: User) -> set[str]:
    """The names of ``user``'s automount folders that exist (trashed ones included: they may
    be restored)."""
    names = session.exec(
        select(VFolder.name).where(
            VFolder.user_id == user.id,
            VFolder.ownership == Ownership.USER,
            col(VFolder.status).not_in(list(_GONE)),
        )
    ).all()
    return {name for name in names if is_automount(name)}


def _check_place(session: Session, where: _Scope, path: str, max_count: int) -> None:
    """Refuse a new ``path`` in ``where``: taken, crossing another file's path, or over the
    count limit."""
    taken = session.exec(select(Dotfile.path).where(Dotfile.scope == where.key)).all()
    for other in taken:
        if other == path:
            raise VfdError(
                ErrorCode.DOTFILE_EXISTS,
                f"a {where.kind.value} dotfile {path!r} exists; update it instead",
                path=path,
            )
        if path.startswith(other + "/"):
            raise VfdError(
                ErrorCode.NOT_A_DIRECTORY,
                f"{path!r} would be under the dotfile {other!r}, which is a file",
                path=path,
                conflict=other,
            )
        if other.startswith(path + "/"):
            raise VfdError(
                ErrorCode.IS_A_DIRECTORY,
                f"{path!r} is a directory of the dotfile {other!r}",
                path=path,
                conflict=other,
            )
    if len(taken) >= max_count:
        raise VfdError(
            ErrorCode.DOTFILE_LIMIT_REACHED,
            f"the {where.kind.value} scope has {len(taken)} dotfiles, the most allowed "
            "([sessions] dotfile_max_count)",
            limit="count",
            max=max_count,
        )


def create(
    daemon: Daemon,
    caller: Caller,
    *,
    path: str,
    data: str,
    mode: str = f"{DEFAULT_MODE:o}",
    scope: DotfileScope | None = None,
    project: str | None = None,
) -> dict[str, Any]:
    """Store a new dotfile; the Dotfile JSON."""
    options = daemon.config.sessions
    path = normalize_path(path)
    bits = parse_mode(mode)
    content = decode_data(data, options.dotfile_max_size)
    with daemon.naming() as session:
        where = _scope(session, caller, scope, project, write=True)
        user_scope = where.kind is DotfileScope.USER
        check_reserved(path, _automounts(session, caller.user) if user_scope else ())
        _check_place(session, where, path, options.dotfile_max_count)
        row = Dotfile(scope_kind=where.kind, scope=where.key, path=path, mode=bits, data=content)
        session.add(row)
        audit.record(session, caller, "dotfile.create", path, scope=where.key, mode=f"{bits:o}")
        session.flush()
        return _json(row, where)


def list_dotfiles(
    daemon: Daemon,
    caller: Caller,
    *,
    scope: DotfileScope | None = None,
    project: str | None = None,
) -> dict[str, Any]:
    """The dotfiles of one scope (the caller's own by default), by path."""
    with daemon.session() as session:
        where = _scope(session, caller, scope, project, write=False)
        rows = session.exec(
            select(Dotfile).where(Dotfile.scope == where.key).order_by(col(Dotfile.path))
        ).all()
        return {"dotfiles": [_json(row, where) for row in rows]}


def get(
    daemon: Daemon,
    caller: Caller,
    path: str,
    *,
    scope: DotfileScope | None = None,
    project: str | None = None,
) -> dict[str, Any]:
    """One dotfile with its content (``data``, base64)."""
    path = normalize_path(path)
    with daemon.session() as session:
        where = _scope(session, caller, scope, project, write=False)
        return _json(_find(session, where, path), where, data=True)


def update(
    daemon: Daemon,
    caller: Caller,
    path: str,
    *,
    data: str | None = None,
    mode: str | None = None,
    scope: DotfileScope | None = None,
    project: str | None = None,
    body_path: str | None = None,
) -> dict[str, Any]:
    """Replace a dotfile's content, mode, or both; the Dotfile JSON. ``body_path``, when the
    body names a path too, must name the same file."""
    path = normalize_path(path)
    if body_path is not None and normalize_path(body_path) != path:
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT,
            f"the body's path {body_path!r} is not the path of the request ({path!r}); a "
            "dotfile is moved by deleting it and creating it again",
            field="path",
        )
    if data is None and mode is None:
        raise VfdError(ErrorCode.INVALID_ARGUMENT, "give data, mode or both", field="data")
    bits = parse_mode(mode) if mode is not None else None
    content = (
        decode_data(data, daemon.config.sessions.dotfile_max_size) if data is not None else None
    )
    with daemon.session() as session:
        where = _scope(session, caller, scope, project, write=True)
        row = _find(session, where, path)
        if bits is not None:
            row.mode = bits
        if content is not None:
            row.data = content
        row.updated_at = utcnow()
        session.add(row)
        audit.record(session, caller, "dotfile.update", path, scope=where.key, mode=f"{row.mode:o}")
        session.flush()
        return _json(row, where)


def delete(
    daemon: Daemon,
    caller: Caller,
    path: str,
    *,
    scope: DotfileScope | None = None,
    project: str | None = None,
) -> None:
    """Remove a dotfile (sessions already started keep their copy)."""
    path = normalize_path(path)
    with daemon.session() as session:
        where = _scope(session, caller, scope, project, write=True)
        session.delete(_find(session, where, path))
        audit.record(session, caller, "dotfile.delete", path, scope=where.key)
