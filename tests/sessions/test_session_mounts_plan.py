"""``resolve_mounts`` and the in-use guard (``vfd.daemon.services.session_mounts``) on a real
SQLite store: the cases a node cannot make on demand (a folder caught ``cloning``, a session in
each status). No docker needed; the container tests are in ``test_session_mounts.py``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from vfd.daemon.services.session_mounts import (
    live_sessions_mounting,
    refuse_if_mounted,
    resolve_mounts,
)
from vfd.enums import SessionStatus
from vfd.errors import ErrorCode, VfdError
from vfd.sessions.lifecycle import LIVE
from vfd.store.db import make_engine, migrate
from vfd.store.models import (
    ComputeSession,
    Ownership,
    Permission,
    Project,
    ProjectMember,
    SessionMount,
    StorageHost,
    User,
    VFolder,
    VFolderStatus,
)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'vfd.db'}")
    migrate(engine)
    with Session(engine) as session:
        session.add(StorageHost(name="local", path=str(tmp_path / "local")))
        session.commit()
    yield engine
    engine.dispose()


def _user(session: Session, n: int) -> User:
    user = User(email=f"u{n}@example.org", username=f"u{n}", uid=32000 + n, gid=32000 + n)
    session.add(user)
    session.flush()
    return user


def _folder(
    session: Session,
    name: str,
    *,
    owner: User | None = None,
    project: Project | None = None,
    creator: User,
    status: VFolderStatus = VFolderStatus.READY,
    permission: Permission = Permission.RW,
) -> VFolder:
    folder = VFolder(
        name=name,
        host="local",
        ownership=Ownership.USER if project is None else Ownership.PROJECT,
        user_id=owner.id if owner is not None else None,
        project_id=project.id if project is not None else None,
        creator_id=creator.id,
        status=status,
        permission=permission,
        scope=f"user:{creator.id.hex}",
    )
    session.add(folder)
    session.flush()
    return folder


def test_session_mounts_plan_refuses_folders_that_are_not_ready(engine: Engine) -> None:
    with Session(engine) as session:
        alice = _user(session, 1)
        for name, status, words in [
            ("copy", VFolderStatus.CLONING, "is cloning, not ready"),
            ("broken", VFolderStatus.CLONE_ERROR, "is clone-error, not ready"),
            ("old", VFolderStatus.DELETE_PENDING, "in the trash"),
            ("dying", VFolderStatus.DELETE_ERROR, "in the trash"),
        ]:
            _folder(session, name, owner=alice, creator=alice, status=status)
            with pytest.raises(VfdError) as caught:
                resolve_mounts(session, alice, [name])
            assert caught.value.code is ErrorCode.INVALID_STATUS
            assert caught.value.details["status"] == status.value
            assert words in caught.value.message
        with pytest.raises(VfdError) as caught:
            resolve_mounts(session, alice, ["nosuch"])
        assert caught.value.code is ErrorCode.VFOLDER_NOT_FOUND


def test_session_mounts_plan_project_folder_ro_needs_ro(engine: Engine) -> None:
    with Session(engine) as session:
        alice = _user(session, 1)
        project = Project(name="p1", gid=33000)
        session.add(project)
        session.flush()
        session.add(ProjectMember(project_id=project.id, user_id=alice.id))
        _folder(session, "data", project=project, creator=alice, permission=Permission.RO)
        _folder(session, "work", project=project, creator=alice, permission=Permission.RW)
        with pytest.raises(VfdError) as caught:
            resolve_mounts(session, alice, ["data"])
        assert caught.value.code is ErrorCode.PERMISSION_DENIED
        assert "mount it with :ro" in caught.value.message
        planned = resolve_mounts(session, alice, ["data:ro", "work:/w"])
        assert [(p.name, p.target, p.permission, p.automount) for p in planned] == [
            ("data", "/home/work/data", Permission.RO, False),
            ("work", "/w", Permission.RW, False),
        ]


def test_session_mounts_plan_automount_only_ready_dot_folders(engine: Engine) -> None:
    with Session(engine) as session:
        alice, bob = _user(session, 1), _user(session, 2)
        _folder(session, ".local", owner=alice, creator=alice)
        _folder(session, ".linuxbrew", owner=alice, creator=alice)
        _folder(session, ".old", owner=alice, creator=alice, status=VFolderStatus.DELETE_PENDING)
        _folder(session, ".cargo", owner=bob, creator=bob)
        _folder(session, "plain", owner=alice, creator=alice)
        planned = resolve_mounts(session, alice, [".local:/opt/local:ro"])
        assert [(p.name, p.target, p.permission, p.automount) for p in planned] == [
            (".local", "/opt/local", Permission.RO, False),
            (".linuxbrew", "/home/linuxbrew/.linuxbrew", Permission.RW, True),
        ]
        with pytest.raises(VfdError) as caught:
            resolve_mounts(session, alice, ["plain:/home/linuxbrew/.linuxbrew/x"])
        assert caught.value.code is ErrorCode.INVALID_MOUNT
        assert "where your automount folder '.linuxbrew' goes" in caught.value.message
        assert caught.value.details["spec"] == "plain:/home/linuxbrew/.linuxbrew/x"


def test_session_mounts_plan_in_use_for_every_live_status_only(engine: Engine) -> None:
    with Session(engine) as session:
        alice, bob = _user(session, 1), _user(session, 2)
        folder = _folder(session, "f", owner=alice, creator=alice)
        for status in SessionStatus:
            row = ComputeSession(
                name=f"s-{status.value}",
                user_id=alice.id,
                uid=alice.uid,
                gid=alice.gid,
                node="n1",
                image="img",
                status=status,
            )
            session.add(row)
            session.flush()
            session.add(
                SessionMount(
                    session_id=row.id,
                    target=f"/home/work/{status.value}",
                    vfolder_id=folder.id,
                    name="f",
                    permission=Permission.RW,
                )
            )
        session.flush()
        using = live_sessions_mounting(session, folder.id)
        assert {row.status for row in using} == set(LIVE)
        with pytest.raises(VfdError) as caught:
            refuse_if_mounted(session, folder, alice, "trash")
        assert caught.value.code is ErrorCode.FOLDER_IN_USE
        assert f"and {len(LIVE) - 1} more" in caught.value.message
        assert len(caught.value.details["sessions"]) == len(LIVE)
        with pytest.raises(VfdError) as caught:
            refuse_if_mounted(session, folder, bob, "rename")
        assert "a session of another user" in caught.value.message
        assert all(s["name"] is None for s in caught.value.details["sessions"])
        refuse_if_mounted(session, _folder(session, "g", owner=alice, creator=alice), alice, "x")
        assert live_sessions_mounting(session, uuid.uuid4()) == []
