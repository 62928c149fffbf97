"""SQLModel tables of the metadata store.

Names and statuses follow Backend.AI where it has them (usage modes, permissions, folder
statuses). Every table change needs an Alembic revision in ``vfd/store/migrations/versions``;
``tests/store/test_migrations.py`` fails when the models and the migrations disagree.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Float,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from vfd.enums import (
    AppStatus as AppStatus,
)
from vfd.enums import (
    DotfileScope as DotfileScope,
)
from vfd.enums import (
    InvitationState as InvitationState,
)
from vfd.enums import (
    Ownership as Ownership,
)
from vfd.enums import (
    Permission as Permission,
)
from vfd.enums import (
    SessionKind as SessionKind,
)
from vfd.enums import (
    SessionStatus as SessionStatus,
)
from vfd.enums import (
    UsageMode as UsageMode,
)
from vfd.enums import (
    UserRole as UserRole,
)
from vfd.enums import (
    UserStatus as UserStatus,
)
from vfd.enums import (
    VFolderStatus as VFolderStatus,
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _ts(**kw: Any) -> Any:
    return Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), **kw))


class StrEnumType(TypeDecorator[Any]):
    """Stores a StrEnum by its value in a VARCHAR (no database enum types to migrate)."""

    impl = String(16)
    cache_ok = True

    def __init__(self, enum_cls: type[enum.StrEnum]) -> None:
        super().__init__()
        self.enum_cls = enum_cls

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else self.enum_cls(value).value

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else self.enum_cls(value)


def _enum(enum_cls: type[enum.StrEnum], default: Any = None, **kw: Any) -> Any:
    col = Column(StrEnumType(enum_cls), nullable=False, **kw)
    if default is None:
        return Field(sa_column=col)
    return Field(default=default, sa_column=col)


class User(SQLModel, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    email: str = Field(unique=True, index=True, max_length=256)
    username: str = Field(max_length=64)
    uid: int = Field(index=True)
    gid: int
    role: UserRole = _enum(UserRole, UserRole.USER)
    status: UserStatus = _enum(UserStatus, UserStatus.ACTIVE)
    host_account: bool = Field(default=False, description="made from a Linux account's uid")
    resource_policy: str | None = Field(default=None, foreign_key="resourcepolicy.name")
    created_at: datetime = _ts(nullable=False)


class Project(SQLModel, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(unique=True, index=True, max_length=64)
    description: str = Field(default="", max_length=1024)
    gid: int
    created_at: datetime = _ts(nullable=False)


class ProjectMember(SQLModel, table=True):
    project_id: uuid.UUID = Field(foreign_key="project.id", primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="user.id", primary_key=True)
    created_at: datetime = _ts(nullable=False)


class StorageHost(SQLModel, table=True):
    name: str = Field(primary_key=True, max_length=64)
    path: str = Field(max_length=4096)
    node: str | None = Field(
        default=None,
        max_length=128,
        description="the node whose local disk holds it; None = shared storage every node reaches",
    )
    created_at: datetime = _ts(nullable=False)


class ResourcePolicy(SQLModel, table=True):
    name: str = Field(primary_key=True, max_length=64)
    max_vfolder_count: int = Field(default=0, description="0 = unlimited")
    max_quota_scope_size: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, default=0)
    )
    allowed_hosts: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    max_sessions: int = Field(default=0, description="live sessions at once; 0 = unlimited")
    max_session_cpu: float = Field(
        default=0.0,
        sa_column=Column(Float, nullable=False, default=0.0),
        description="cpu of all the user's live sessions together; 0 = unlimited",
    )
    max_session_memory: int = Field(
        default=0,
        sa_column=Column(BigInteger, nullable=False, default=0),
        description="bytes of all the user's live sessions together; 0 = unlimited",
    )
    idle_timeout: float = Field(
        default=0.0,
        sa_column=Column(Float, nullable=False, default=0.0),
        description="seconds a running session may stay idle; 0 = forever",
    )
    max_lifetime: float = Field(
        default=0.0,
        sa_column=Column(Float, nullable=False, default=0.0),
        description="seconds a session may run; 0 = no limit",
    )
    allowed_images: list[str] = Field(
        default_factory=list,
        sa_column=Column(JSON, nullable=False),
        description="fnmatch patterns of images sessions may use; empty = any",
    )
    allowed_groups: list[str] = Field(
        default_factory=list,
        sa_column=Column(JSON, nullable=False),
        description="resource groups sessions may use; empty = any",
    )
    max_storage_sessions: int = Field(
        default=2, description="live storage-only sessions at once; 0 = unlimited"
    )
    max_slots: dict[str, float] = Field(
        default_factory=dict,
        sa_column=Column(JSON, nullable=False),
        description="accelerator slots of all the user's live sessions together, by slot "
        "name ({'cuda.device': 2}); a missing slot = unlimited",
    )
    created_at: datetime = _ts(nullable=False)


class ResourceGroup(SQLModel, table=True):
    """Nodes that share one scheduler and one queue; ``default`` is made by the migrations."""

    name: str = Field(primary_key=True, max_length=64)
    scheduler: str = Field(
        default="", max_length=128, description="empty: the leader's [sessions] scheduler"
    )
    description: str = Field(default="", max_length=1024)
    created_at: datetime = _ts(nullable=False)


class ResourceGroupAccess(SQLModel, table=True):
    """Who may use a group: one user or one project's members per row. A group with no rows
    is open to everyone."""

    id: int | None = Field(default=None, primary_key=True)
    group: str = Field(foreign_key="resourcegroup.name", max_length=64, index=True)
    user_id: uuid.UUID | None = Field(default=None, foreign_key="user.id")
    project_id: uuid.UUID | None = Field(default=None, foreign_key="project.id")


class Agent(SQLModel, table=True):
    """A node's daemon as registered in the store; what it holds is computed from sessions."""

    id: str = Field(primary_key=True, max_length=128, description="the node's name")
    address: str = Field(default="", max_length=256, description="informative: socket or host")
    group: str = Field(default="default", foreign_key="resourcegroup.name", max_length=64)
    cpu: float = Field(default=0.0, sa_column=Column(Float, nullable=False))
    memory: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    version: str = Field(default="", max_length=64)
    accelerators: dict[str, Any] | None = Field(
        default=None,
        sa_column=Column(JSON, nullable=True),
        description="by accelerator name: {status, devices: [DeviceInfo json], units: "
        "[{slot, device, capacity, numa, near}]}; None = no accelerator plugin",
    )
    started_at: datetime = _ts(nullable=False)
    heartbeat_at: datetime = _ts(nullable=False)


class SessionPreset(SQLModel, table=True):
    """A named size of session (``vfd run --preset NAME``)."""

    name: str = Field(primary_key=True, max_length=64)
    cpu: float = Field(default=1.0, sa_column=Column(Float, nullable=False))
    memory: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    slots: dict[str, float] = Field(
        default_factory=dict,
        sa_column=Column(JSON, nullable=False),
        description="accelerator slots ({'cuda.shares': 0.5})",
    )
    created_at: datetime = _ts(nullable=False)


class QuotaScope(SQLModel, table=True):
    """Byte and file limits of one owner on one host; usage is kept by mountd."""

    __table_args__ = (UniqueConstraint("host", "scope"),)

    id: int | None = Field(default=None, primary_key=True)
    host: str = Field(foreign_key="storagehost.name", max_length=64)
    scope: str = Field(max_length=80, description="user:<uuid hex> or project:<uuid hex>")
    max_bytes: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    max_files: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    used_bytes: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    used_files: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    updated_at: datetime = _ts(nullable=False)


class VFolder(SQLModel, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(index=True, max_length=64)
    host: str = Field(foreign_key="storagehost.name", max_length=64)
    ownership: Ownership = _enum(Ownership)
    user_id: uuid.UUID | None = Field(default=None, foreign_key="user.id", index=True)
    project_id: uuid.UUID | None = Field(default=None, foreign_key="project.id", index=True)
    creator_id: uuid.UUID = Field(foreign_key="user.id")
    usage_mode: UsageMode = _enum(UsageMode, UsageMode.GENERAL)
    permission: Permission = _enum(Permission, Permission.RW)
    cloneable: bool = Field(default=False)
    status: VFolderStatus = _enum(VFolderStatus, VFolderStatus.READY, index=True)
    scope: str = Field(max_length=80)
    created_at: datetime = _ts(nullable=False)
    status_changed_at: datetime = _ts(nullable=False)
    status_error: str | None = Field(
        default=None, max_length=32, description="error code of a failed clone (clone-error)"
    )
    status_reason: str | None = Field(
        default=None, max_length=1024, description="why the folder is in its status, for people"
    )
    clone_source_id: uuid.UUID | None = Field(
        default=None,
        description="the folder this one was cloned from (no foreign key: the "
        "source may be purged)",
    )
    clone_total_bytes: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    clone_total_files: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    clone_done_bytes: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    clone_done_files: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    share_gid: int | None = Field(
        default=None,
        sa_column=Column(BigInteger, nullable=True, unique=True),
        description="a user folder's own group, given when it is first shared rw "
        "(docs/storage.md 'Folders shared rw'); project folders use the project's gid",
    )


class VFolderPermission(SQLModel, table=True):
    """A user's own permission on a folder: an accepted invitation, or a project override."""

    vfolder_id: uuid.UUID = Field(foreign_key="vfolder.id", primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="user.id", primary_key=True)
    permission: Permission = _enum(Permission)
    created_at: datetime = _ts(nullable=False)


class VFolderInvitation(SQLModel, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    vfolder_id: uuid.UUID = Field(foreign_key="vfolder.id", index=True)
    inviter_id: uuid.UUID = Field(foreign_key="user.id")
    invitee_id: uuid.UUID = Field(foreign_key="user.id", index=True)
    permission: Permission = _enum(Permission)
    state: InvitationState = _enum(InvitationState, InvitationState.PENDING)
    created_at: datetime = _ts(nullable=False)
    modified_at: datetime = _ts(nullable=False)


class ApiToken(SQLModel, table=True):
    """A bearer token for the TCP listener; only its SHA-256 is stored."""

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="user.id", index=True)
    name: str = Field(max_length=64)
    token_sha256: str = Field(unique=True, max_length=64)
    created_at: datetime = _ts(nullable=False)
    expires_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class AuditEvent(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts(nullable=False, index=True)
    actor_id: uuid.UUID | None = Field(default=None)
    action: str = Field(max_length=64)
    target: str = Field(max_length=256)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class ComputeSession(SQLModel, table=True):
    """A compute session: a container with folders mounted (table ``session``).

    Its status moves only through ``vfd.sessions.lifecycle.check_transition``; every move is
    also a :class:`SessionEvent`. Names are unique per user among live sessions (by checks in
    code, under the daemon's naming lock).
    """

    __tablename__ = "session"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    kind: SessionKind = _enum(SessionKind, SessionKind.COMPUTE, index=True)
    """``compute`` (a container) or ``storage`` (apps over folder views, no container)."""
    name: str = Field(index=True, max_length=64)
    user_id: uuid.UUID = Field(foreign_key="user.id", index=True)
    uid: int = Field(description="the uid the container runs as")
    gid: int = Field(description="the primary gid the container runs as")
    node: str = Field(max_length=128, index=True, description="the node it runs (or ran) on")
    image: str = Field(max_length=512)
    command: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    env: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    cpu: float = Field(default=1.0, sa_column=Column(Float, nullable=False))
    memory: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    slots: dict[str, float] | None = Field(
        default=None,
        sa_column=Column(JSON, nullable=True),
        description="accelerator slots asked for ({'cuda.shares': 0.5}); None = none",
    )
    allocation: list[dict[str, Any]] | None = Field(
        default=None,
        sa_column=Column(JSON, nullable=True),
        description="the devices it holds, [{slot, device, amount}], set when it is placed; "
        "None = none",
    )
    auto_remove: bool = Field(default=False, description="--rm: container removed at exit")
    status: SessionStatus = _enum(SessionStatus, SessionStatus.PENDING, index=True)
    status_reason: str | None = Field(default=None, max_length=1024)
    status_plugin: str | None = Field(
        default=None, max_length=128, description="the plugin that vetoed or failed it"
    )
    status_changed_at: datetime = _ts(nullable=False)
    scheduler_verdict: str | None = Field(
        default=None, max_length=1024, description="why the scheduler has not placed it yet"
    )
    scheduler_verdicts: list[dict[str, Any]] = Field(
        default_factory=list,
        sa_column=Column(JSON, nullable=False),
        description="the latest verdicts of the scheduler's predicates: [{name, ok, reason}]",
    )
    group: str = Field(default="default", max_length=64, index=True)
    lifetime: float | None = Field(
        default=None,
        sa_column=Column(Float, nullable=True),
        description="seconds it may run (asked, capped by the policy); None = no limit",
    )
    last_activity_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True)),
        description="the last exec, shell or app connection (the idle reaper's clock)",
    )
    container_id: str | None = Field(default=None, max_length=80)
    exit_code: int | None = Field(default=None)
    created_at: datetime = _ts(nullable=False)
    started_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    terminated_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class SessionEvent(SQLModel, table=True):
    """One status change of a session: when, to what, why, and by which plugin."""

    id: int | None = Field(default=None, primary_key=True)
    session_id: uuid.UUID = Field(foreign_key="session.id", index=True)
    at: datetime = _ts(nullable=False)
    status: SessionStatus = _enum(SessionStatus)
    reason: str | None = Field(default=None, max_length=1024)
    plugin: str | None = Field(default=None, max_length=128)


class SessionMount(SQLModel, table=True):
    """A folder mounted into a session, at ``target``, through its ``rw`` or ``ro`` view."""

    session_id: uuid.UUID = Field(foreign_key="session.id", primary_key=True)
    target: str = Field(primary_key=True, max_length=1024)
    vfolder_id: uuid.UUID = Field(foreign_key="vfolder.id", index=True)
    name: str = Field(max_length=64, description="the folder's name when the session began")
    permission: Permission = _enum(Permission)
    automount: bool = Field(default=False)


class SessionApp(SQLModel, table=True):
    """An app of a session: a server process the daemon runs for it (``sftp``,
    ``filebrowser``) or a service of its container reached through the daemon's proxy.

    ``endpoint`` is where a client reaches it (``host:port`` or a URL); ``pid`` the process
    the daemon runs for it (None for a proxied service). Apps end with their session.
    """

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    session_id: uuid.UUID = Field(foreign_key="session.id", index=True)
    name: str = Field(max_length=64)
    kind: str = Field(max_length=32, description="process | service")
    port: int | None = Field(default=None)
    endpoint: str | None = Field(default=None, max_length=1024)
    pid: int | None = Field(default=None)
    status: AppStatus = _enum(AppStatus, AppStatus.STARTING, index=True)
    status_reason: str | None = Field(default=None, max_length=1024)
    secret: str | None = Field(
        default=None,
        max_length=8192,
        description="what its user needs to reach it (the SFTP app's private key); "
        "cleared when it ends",
    )
    started_at: datetime = _ts(nullable=False)
    ended_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class Dotfile(SQLModel, table=True):
    """A file written into ``/home/work`` of sessions at their start.

    ``scope`` is ``user:<uuid hex>``, ``project:<uuid hex>`` or ``cluster``; ``path`` is
    relative to ``/home/work``.
    """

    __table_args__ = (UniqueConstraint("scope", "path"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    scope_kind: DotfileScope = _enum(DotfileScope)
    scope: str = Field(max_length=80, index=True)
    path: str = Field(max_length=256)
    mode: int = Field(default=0o644)
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(nullable=False)


class ConsoleLink(SQLModel, table=True):
    """A one-time sign-in link of the web console (``vfd console``): only its code's SHA-256
    is stored; it signs in once (``used_at``) before ``expires_at``."""

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="user.id", index=True)
    actor_id: uuid.UUID | None = Field(default=None, description="who asked for it")
    code_sha256: str = Field(unique=True, max_length=64)
    created_at: datetime = _ts(nullable=False)
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    used_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class ConsoleSession(SQLModel, table=True):
    """A signed-in browser of the web console: only the SHA-256 of its cookie is stored.

    ``method`` is how it signed in (``link`` or ``token``); ``token_id`` the API token it
    signed in with, whose revocation or expiry ends it. Sign-out sets ``ended_at``.
    """

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="user.id", index=True)
    actor_id: uuid.UUID | None = Field(default=None)
    token_sha256: str = Field(unique=True, max_length=64)
    method: str = Field(max_length=16)
    token_id: uuid.UUID | None = Field(default=None)
    created_at: datetime = _ts(nullable=False)
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    ended_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
