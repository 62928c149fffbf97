"""The records plugins receive and return. Plain frozen dataclasses: a plugin needs nothing of
vfd's store or web framework to read them, and cannot change what it was handed.

Registration hooks return specs (:class:`SchedulerSpec` now; accelerator and app specs come
with their plugins); lifecycle hooks receive a :class:`SessionView` or a :class:`FolderView`;
``vfd_container_spec`` returns a :class:`ContainerContribution`; ``pre`` hooks veto by raising
:class:`Reject`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


class Reject(Exception):
    """Raised by a veto hook (``vfd_validate_session``, ``vfd_session_before_start``) to
    refuse a session; ``reason`` is shown to the user with the plugin's name."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class MountView:
    """A folder a session mounts."""

    folder: str
    """The folder's name (as its user sees it)."""
    folder_id: uuid.UUID
    target: str
    """Absolute path inside the container."""
    permission: str
    """``ro`` or ``rw``: the view mounted."""
    automount: bool = False
    """Mounted because it is one of the user's dot-folders, not asked for with ``-m``."""


@dataclass(frozen=True)
class SessionRequest:
    """A session as asked for, before it is stored (``vfd_validate_session``)."""

    user_id: uuid.UUID
    user_email: str
    uid: int
    gid: int
    name: str
    image: str
    command: tuple[str, ...]
    env: Mapping[str, str]
    cpu: float
    memory: int
    """Bytes; 0 = no limit asked for."""
    mounts: tuple[MountView, ...]


@dataclass(frozen=True)
class SessionView:
    """A stored session as plugins see it (every lifecycle hook)."""

    id: uuid.UUID
    name: str
    user_id: uuid.UUID
    user_email: str
    uid: int
    gid: int
    node: str
    image: str
    command: tuple[str, ...]
    env: Mapping[str, str]
    cpu: float
    memory: int
    mounts: tuple[MountView, ...]
    status: str
    created_at: datetime
    container_id: str | None = None
    exit_code: int | None = None


@dataclass(frozen=True)
class BindMount:
    """A host path bind-mounted into the container."""

    source: str
    target: str
    read_only: bool = True


@dataclass(frozen=True)
class DeviceRequest:
    """One docker device request (``DeviceRequest`` of the docker API)."""

    driver: str
    device_ids: tuple[str, ...] = ()
    count: int | None = None
    capabilities: tuple[tuple[str, ...], ...] = ()
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ContainerContribution:
    """What one plugin adds to a session's container (``vfd_container_spec``).

    Two plugins setting the same env var, label or limit, or mounting onto the same target,
    make the session fail with an error naming both; none may set what vfd itself sets
    (``HOME``, the ``vfd.*`` labels, the folder targets).
    """

    env: Mapping[str, str] = field(default_factory=dict)
    mounts: Sequence[BindMount] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    device_requests: Sequence[DeviceRequest] = ()
    limits: Mapping[str, int] = field(default_factory=dict)
    """docker ``HostConfig`` resource keys (``pids_limit``, ``shm_size``, ``cpu_shares``…)."""


@dataclass(frozen=True)
class FolderView:
    """A folder as plugins see it (the ``vfd_folder_*`` hooks)."""

    id: uuid.UUID
    name: str
    host: str
    ownership: str
    """``user`` or ``project``."""
    owner_id: uuid.UUID
    """The owning user's or project's id."""
    usage_mode: str
    status: str


@dataclass(frozen=True)
class Capacity:
    """A node's resources as a scheduler sees them."""

    node: str
    cpu: float
    memory: int
    used_cpu: float
    used_memory: int

    @property
    def free_cpu(self) -> float:
        return self.cpu - self.used_cpu

    @property
    def free_memory(self) -> int:
        return self.memory - self.used_memory


@dataclass(frozen=True)
class PendingSession:
    """A session waiting to be placed, in the order it was asked for."""

    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    created_at: datetime
    cpu: float
    memory: int


@dataclass(frozen=True)
class Decision:
    """A scheduler's answer: sessions to place now (in that order), and why each other one
    waits (shown by ``vfd session info``)."""

    place: tuple[uuid.UUID, ...] = ()
    waiting: Mapping[uuid.UUID, str] = field(default_factory=dict)


class Scheduler(Protocol):
    """Chooses which pending sessions start. Called on the daemon's event loop; must not
    block (it gets plain records, no store or docker)."""

    def decide(self, pending: Sequence[PendingSession], capacity: Capacity) -> Decision: ...


@dataclass(frozen=True)
class SchedulerSpec:
    """A scheduler a plugin offers (``vfd_register_schedulers``); chosen by ``name``."""

    name: str
    description: str
    factory: Callable[[Mapping[str, Any]], Scheduler]
    """Builds the scheduler from its options (the ``[plugins.<plugin>]`` section)."""
