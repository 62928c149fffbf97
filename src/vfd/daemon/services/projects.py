"""Projects and their members (admin routes).

A project's gid owns its folders (setgid roots) and is added to its members' groups, so it
must be the project's alone: a new project gets the lowest gid of ``project_gid_range`` that no
other project and no host group uses; an explicit gid that is a host group's is refused,
unless that group has the project's name (a project made for an existing host group).
"""

from __future__ import annotations

import re
from typing import Any

from sqlmodel import Session, col, select

from vfd.daemon.services import access, audit, folder_groups
from vfd.daemon.services.context import Caller, Daemon
from vfd.daemon.services.render import project_json
from vfd.daemon.services.users import find_user
from vfd.errors import ErrorCode, VfdError
from vfd.store.models import (
    Ownership,
    Project,
    ProjectMember,
    User,
    VFolder,
    VFolderPermission,
)

_PROJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_DESCRIPTION = 1024


def find_project(session: Session, name: str) -> Project:
    project = session.exec(select(Project).where(Project.name == name)).first()
    if project is None:
        raise VfdError(ErrorCode.PROJECT_NOT_FOUND, f"no project {name!r}", project=name)
    return project


def member_emails(session: Session, project: Project) -> list[str]:
    return list(
        session.exec(
            select(User.email).where(
                ProjectMember.project_id == project.id, ProjectMember.user_id == User.id
            )
        )
    )


def is_member(session: Session, project: Project, user: User) -> bool:
    return session.get(ProjectMember, (project.id, user.id)) is not None


def create_project(
    daemon: Daemon,
    caller: Caller,
    *,
    name: str,
    description: str = "",
    gid: int | None = None,
) -> dict[str, Any]:
    caller.require_admin()
    if not _PROJECT_NAME.match(name):
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT,
            "project names have 1-64 letters, digits, '.', '_' or '-', starting with a letter "
            "or digit",
            field="name",
        )
    if len(description) > MAX_DESCRIPTION:
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT,
            f"description has more than {MAX_DESCRIPTION} characters",
            field="description",
        )
    if gid is not None:
        if not 0 <= gid < 2**32 - 1:
            raise VfdError(ErrorCode.INVALID_ARGUMENT, "gid out of range", field="gid")
        _check_host_group(gid, name)
    with daemon.naming() as session:  # serialised: two new projects never get one gid
        if session.exec(select(Project).where(Project.name == name)).first() is not None:
            raise VfdError(ErrorCode.PROJECT_EXISTS, f"project {name!r} exists", project=name)
        if gid is None:
            gid = _free_gid(session, daemon.config.project_gid_range)
        elif folder_groups.held_by_folder(session, gid):
            raise VfdError(
                ErrorCode.INVALID_ARGUMENT,
                f"gid {gid} is the group of a folder shared rw; give another gid",
                field="gid",
                gid=gid,
            )
        project = Project(name=name, description=description, gid=gid)
        session.add(project)
        audit.record(session, caller, "project.create", name, gid=gid)
        session.flush()
        return project_json(project, [])


def _check_host_group(gid: int, project: str) -> None:
    """Refuse ``gid`` when a host group other than one named ``project`` has it: its members
    would reach the project's files, and the project's members theirs."""
    group = folder_groups.host_group(gid)
    if group is not None and group != project:
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT,
            f"gid {gid} is the host group {group!r}; give a gid no host group uses, or leave "
            "it out to get a free one from project_gid_range (a project may use the host "
            "group of its own name)",
            field="gid",
            gid=gid,
            group=group,
        )


def _free_gid(session: Session, gid_range: tuple[int, int]) -> int:
    """The lowest gid of ``gid_range`` that no project and no host group uses."""
    gid = folder_groups.lowest_free_gid(session, gid_range)  # shared folders draw from it too
    if gid is not None:
        return gid
    low, high = gid_range
    raise VfdError(
        ErrorCode.INVALID_ARGUMENT,
        f"every gid of project_gid_range [{low}, {high}] is taken by a project or a host "
        "group; widen the range in the configuration, or give a gid",
        field="gid",
    )


def list_projects(daemon: Daemon, caller: Caller) -> dict[str, Any]:
    caller.require_admin()
    with daemon.session() as session:
        projects = session.exec(select(Project).order_by(col(Project.name))).all()
        return {"projects": [project_json(p, member_emails(session, p)) for p in projects]}


def add_member(daemon: Daemon, caller: Caller, name: str, *, email: str) -> dict[str, Any]:
    """Add ``email`` to the project; refused when one of its folder names clashes with theirs."""
    caller.require_admin()
    with daemon.naming() as session:
        project = find_project(session, name)
        user = find_user(session, email)
        if is_member(session, project, user):
            raise VfdError(
                ErrorCode.ALREADY_MEMBER, f"{email} is already in project {name}", email=email
            )
        folders = session.exec(
            select(VFolder).where(
                VFolder.ownership == Ownership.PROJECT,
                VFolder.project_id == project.id,
                col(VFolder.status).in_(list(access.NOT_PURGED)),
            )
        ).all()
        for folder in folders:
            for hit in access.accessible(session, user, name=folder.name):
                if hit.folder.id != folder.id:
                    raise VfdError(
                        ErrorCode.VFOLDER_EXISTS,
                        f"{email} already has a folder named {folder.name!r}, like a folder of "
                        f"project {name}; rename one first",
                        name=folder.name,
                        email=email,
                    )
        session.add(ProjectMember(project_id=project.id, user_id=user.id))
        audit.record(session, caller, "project.member.add", name, email=email)
        session.flush()
        return project_json(project, member_emails(session, project))


def remove_member(daemon: Daemon, caller: Caller, name: str, email: str) -> dict[str, Any]:
    """Remove ``email`` from the project, with their permission overrides on its folders."""
    caller.require_admin()
    with daemon.session() as session:
        project = find_project(session, name)
        user = find_user(session, email)
        membership = session.get(ProjectMember, (project.id, user.id))
        if membership is None:
            raise VfdError(ErrorCode.NOT_A_MEMBER, f"{email} is not in project {name}", email=email)
        folder_ids = select(VFolder.id).where(VFolder.project_id == project.id)
        for row in session.exec(
            select(VFolderPermission).where(
                VFolderPermission.user_id == user.id,
                col(VFolderPermission.vfolder_id).in_(folder_ids),
            )
        ):
            session.delete(row)
        session.delete(membership)
        audit.record(session, caller, "project.member.remove", name, email=email)
        session.flush()
        return project_json(project, member_emails(session, project))
