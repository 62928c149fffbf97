"""The records plugins receive and return. Plain frozen dataclasses: a plugin needs nothing of
vfd's store or web framework to read them, and cannot change what it was handed.

Registration hooks return specs (:class:`SchedulerSpec`, :class:`AppSpec`; accelerator specs
come with their plugins); lifecycle hooks receive a :class:`SessionView`, a :class:`FolderView` or,
for apps, a :class:`SessionView` and an :class:`AppView`;
``vfd_container_spec`` returns a :class:`ContainerContribution`; ``pre`` hooks veto by raising
:class:`Reject`.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


class _Empty(Mapping[str, Any]):
    """An empty, immutable mapping usable as a dataclass default."""

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "{}"


NO_SLOTS: Mapping[str, float] = _Empty()
"""No accelerator slots (the default of every ``slots`` field)."""
NO_NEAR: Mapping[str, int] = _Empty()


class Reject(Exception):
    """Raised by a veto hook (``vfd_validate_session``, ``vfd_session_before_start``,
    ``vfd_app_before_launch``) to refuse a session or an app; ``reason`` is shown to the user
    with the plugin's name."""

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
    slots: Mapping[str, float] = NO_SLOTS
    """Accelerator slots asked for (``{"cuda.shares": 0.5}``); empty = none."""


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
    kind: str = "compute"
    """``compute`` (a container) or ``storage`` (apps over folder views, no container)."""
    slots: Mapping[str, float] = NO_SLOTS
    """Accelerator slots asked for; empty = none."""
    allocation: tuple[Allotment, ...] = ()
    """The devices it holds (set when the scheduler places it; empty = none)."""


@dataclass(frozen=True)
class AppView:
    """An app of a session as plugins see it (the ``vfd_app_*`` hooks)."""

    id: uuid.UUID
    session_id: uuid.UUID
    name: str
    """``sftp``, ``filebrowser``, or a service's name."""
    kind: str
    """``process`` (a server the daemon runs over the session's folders) or ``service`` (a
    port of the session's container, reached through the daemon's proxy)."""
    status: str
    """``starting`` (``vfd_app_before_launch``), ``running`` (``vfd_app_launched``),
    ``stopped`` or ``failed`` (``vfd_app_stopped``)."""
    port: int | None = None
    endpoint: str | None = None
    """Where a client reaches it (``host:port`` or a URL); None before it serves."""
    pid: int | None = None
    reason: str | None = None
    """Why it stopped (``vfd_app_stopped``)."""


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
    cpuset_cpus: str | None = None
    """The CPUs the container may run on (docker ``cpuset_cpus``, e.g. ``"0-15,32-47"``):
    an accelerator plugin keeps a session on its devices' NUMA node."""


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


CPU_SLACK = 1e-9
"""How far cpu may exceed a bound and still count as within it (float sums of fractions)."""


def add_slots(a: Mapping[str, float], b: Mapping[str, float], sign: int = 1) -> Mapping[str, float]:
    """``a + b`` (``a - b`` with ``sign`` -1), slot by slot."""
    if not b:
        return a
    out = dict(a)
    for name, amount in b.items():
        out[name] = out.get(name, 0.0) + sign * amount
    return out


@dataclass(frozen=True)
class Resources:
    """An amount of each schedulable resource: cpu, memory and accelerator slots."""

    cpu: float = 0.0
    memory: int = 0
    """Bytes."""
    slots: Mapping[str, float] = NO_SLOTS
    """Accelerator slots by name (``cuda.device``, ``cuda.shares``); missing = 0."""

    def __add__(self, other: Resources) -> Resources:
        if not self.slots and not other.slots:
            return Resources(self.cpu + other.cpu, self.memory + other.memory)
        return Resources(
            self.cpu + other.cpu, self.memory + other.memory, add_slots(self.slots, other.slots)
        )

    def __sub__(self, other: Resources) -> Resources:
        if not self.slots and not other.slots:
            return Resources(self.cpu - other.cpu, self.memory - other.memory)
        return Resources(
            self.cpu - other.cpu,
            self.memory - other.memory,
            add_slots(self.slots, other.slots, -1),
        )

    def fits_in(self, other: Resources) -> bool:
        """Whether each component is at most ``other``'s (cpu and slots with a 1e-9 slack).
        Slots are compared as totals: whether they fit on the devices is
        :func:`vfd.scheduling.slots.allot`'s question."""
        return (
            self.cpu <= other.cpu + CPU_SLACK
            and self.memory <= other.memory
            and all(v <= other.slots.get(k, 0.0) + CPU_SLACK for k, v in self.slots.items())
        )


@dataclass(frozen=True)
class SlotUnit:
    """One device of an agent as the scheduler sees it: what it is worth of one accelerator
    slot, what sessions hold of it, and where it sits. A node offers each of its devices (or
    MIG instances) as one unit of exactly one slot."""

    slot: str
    """``cuda.device`` (capacity 1: whole devices) or ``cuda.shares`` (its shares)."""
    device: str
    """The device's id (a GPU or MIG UUID)."""
    capacity: float
    used: float = 0.0
    numa: int | None = None
    """The NUMA node it is attached to; None = unknown or a single-node machine."""
    near: Mapping[str, int] = NO_NEAR
    """Topology distance to other devices by id (NVML's common-ancestor levels: 0 same
    board, 10 one switch, 20 several switches, 30 one host bridge, 40 one NUMA node, 50
    across NUMA nodes); a device missing here is 40 away on the same NUMA node, else 50."""

    @property
    def free(self) -> float:
        return self.capacity - self.used


@dataclass(frozen=True)
class Allotment:
    """Part of a session's allocation: ``amount`` of ``slot`` on device ``device``."""

    slot: str
    device: str
    amount: float


@dataclass(frozen=True)
class PendingSession:
    """A session waiting to be placed, as its owner asked for it."""

    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    created_at: datetime
    cpu: float
    memory: int
    group: str = "default"
    """The resource group asked for."""
    image: str = ""
    project_id: uuid.UUID | None = None
    lifetime: float | None = None
    """Seconds asked for (maximum lifetime); None = no limit."""
    storage_hosts: tuple[str, ...] = ()
    """The storage hosts of the folders it mounts."""
    slots: Mapping[str, float] = NO_SLOTS
    """Accelerator slots asked for (``{"cuda.device": 2}``); empty = none."""

    @property
    def request(self) -> Resources:
        return Resources(self.cpu, self.memory, self.slots)


@dataclass(frozen=True)
class Agent:
    """A node's daemon as a scheduler sees it."""

    id: str
    """The node's name."""
    group: str
    cpu: float
    """Capacity for sessions."""
    memory: int
    used_cpu: float
    used_memory: int
    alive: bool = True
    """Heartbeat fresh; a dead agent takes nothing new."""
    storage_hosts: frozenset[str] | None = None
    """The storage hosts reachable there; None = every host."""
    units: tuple[SlotUnit, ...] = ()
    """Its accelerator devices, each one unit of one slot, with what sessions hold of it."""

    @property
    def capacity(self) -> Resources:
        if not self.units:
            return Resources(self.cpu, self.memory)
        return Resources(self.cpu, self.memory, _unit_sums(self.units, used=False))

    @property
    def free(self) -> Resources:
        if not self.units:
            return Resources(self.cpu - self.used_cpu, self.memory - self.used_memory)
        return Resources(
            self.cpu - self.used_cpu,
            self.memory - self.used_memory,
            _unit_sums(self.units, used=True),
        )


def _unit_sums(units: Sequence[SlotUnit], *, used: bool) -> Mapping[str, float]:
    """Each slot's total capacity (or free amount, with ``used``) over ``units``."""
    out: dict[str, float] = {}
    for u in units:
        out[u.slot] = out.get(u.slot, 0.0) + (u.free if used else u.capacity)
    return out


@dataclass(frozen=True)
class UserLimits:
    """The session part of a user's resource policy (0 or empty = no limit)."""

    max_sessions: int = 0
    max_cpu: float = 0.0
    """Total cpu of the user's live sessions."""
    max_memory: int = 0
    max_slots: Mapping[str, float] = NO_SLOTS
    """Total of each accelerator slot of the user's live sessions; a missing slot = no
    limit."""
    allowed_images: tuple[str, ...] = ()
    """fnmatch patterns; () = any image."""
    allowed_groups: tuple[str, ...] = ()
    """() = any group."""


@dataclass(frozen=True)
class Snapshot:
    """Everything a scheduler decides on, for one resource group and one round."""

    group: str
    """The resource group scheduled."""
    pending: tuple[PendingSession, ...]
    """Oldest first."""
    agents: tuple[Agent, ...]
    allocations: Mapping[uuid.UUID, Resources]
    """Each user's sessions holding resources in the group, summed, by user id."""
    running: Mapping[uuid.UUID, int]
    """Each user's number of live (resource-holding) sessions in every group."""
    limits: Mapping[uuid.UUID, UserLimits]
    """By user id; a missing user has no limits."""
    memo: Mapping[str, Any]
    """What this scheduler's previous :attr:`Decision.memo` said (empty at first)."""
    now: datetime


@dataclass(frozen=True)
class Verdict:
    """One check of a pending session: a predicate's (``fits_agent``, ``within_policy``,
    ``within_concurrency``, ``group_allowed``, ``image_allowed``, ``folders_reachable``) or
    the scheduler's own (``queue``)."""

    name: str
    ok: bool
    reason: str
    """One line for people."""


@dataclass(frozen=True)
class Placement:
    """Start session ``session_id`` on agent ``agent``."""

    session_id: uuid.UUID
    agent: str


@dataclass(frozen=True)
class Decision:
    """A scheduler's answer: sessions to place now (in that order) and where, and for each
    other pending session why it waits (shown by ``vfd session info``)."""

    place: tuple[Placement, ...] = ()
    waiting: Mapping[uuid.UUID, tuple[Verdict, ...]] = field(default_factory=dict)
    memo: Mapping[str, Any] = field(default_factory=dict)
    """Handed back as the next round's :attr:`Snapshot.memo` (JSON-able values)."""


class Scheduler(Protocol):
    """Chooses which pending sessions start and where: a pure function of a snapshot. Called
    on the daemon's event loop; must not block (it gets plain records, no store or docker)."""

    def decide(self, snapshot: Snapshot) -> Decision: ...


@dataclass(frozen=True)
class SchedulerSpec:
    """A scheduler a plugin offers (``vfd_register_schedulers``); chosen by ``name``."""

    name: str
    description: str
    factory: Callable[[Mapping[str, Any]], Scheduler]
    """Builds the scheduler from its options (the ``[plugins.<plugin>]`` section)."""


@dataclass(frozen=True)
class AppLaunch:
    """How one launch of an app runs: what an :class:`AppSpec`'s ``plan`` returns."""

    options: Mapping[str, Any] = field(default_factory=dict)
    """The server's own settings (JSON-able), sent in its spec on its stdin (never on a
    command line): :attr:`vfd.apps.confine.ConfineSpec.options`."""
    secret: str | None = None
    """Kept with the app while it runs, for its user alone (a private key, a token); cleared
    when it ends."""
    endpoint: str = "{host}:{port}"
    """Where a client reaches it; ``{host}`` (``[apps] public_host``) and ``{port}`` are
    filled in."""


@dataclass(frozen=True)
class AppContext:
    """What an app's ``plan`` gets: the session and app about to start, and what it may
    read."""

    session: SessionView
    app: AppView
    """``starting``; ``port`` is the port the user asked for, if any."""
    username: str
    """The session's user's login name."""
    options: Mapping[str, Any]
    """The registering plugin's ``[plugins.<plugin>]`` section."""
    config: Any
    """The daemon's configuration (:class:`vfd.config.Config`, read-only)."""
    read_user_file: Callable[[str, str], Awaitable[bytes | None]]
    """``await read_user_file(FOLDER, NAME)``: the file ``NAME`` at the top of the user's own
    folder ``FOLDER``, read as the user through its ``ro`` view (a symbolic link is not
    followed; at most 1 MiB); None when there is no such folder or file, or it cannot be
    read (logged)."""


@dataclass(frozen=True)
class AppSpec:
    """An app a plugin offers (``vfd_register_apps``): a server the daemon runs over a
    session's folder views, as the session's user and confined to them."""

    name: str
    """``[a-z][a-z0-9-]*``, at most 32 characters, as service names (docs/apps.md)."""
    description: str
    module: str
    """Run as ``python -m MODULE``: it reads its spec with
    :func:`vfd.apps.confine.read_spec`, calls :func:`vfd.apps.confine.confine`, serves on the
    listening socket it was handed and reports ``ready`` on stdout."""
    plan: Callable[[AppContext], AppLaunch | Awaitable[AppLaunch]]
    """Plans one launch (options, secret, endpoint); may be a coroutine function."""
    link: bool = False
    """The endpoint with ``?vfd_token=SECRET`` is the URL its user opens (a web app whose
    secret is its token): ``vfd session app`` and ``vfd session apps`` print it."""


@dataclass(frozen=True)
class SlotSpec:
    """An accelerator slot a plugin offers (:class:`AcceleratorSpec`)."""

    name: str
    """``PLUGIN.KIND``: ``cuda.device``, ``cuda.shares``."""
    quantum: float
    """Requests are whole multiples of it (1 for whole devices, 0.1 for shares)."""
    description: str


@dataclass(frozen=True)
class DeviceInfo:
    """One accelerator device as discovered (or declared in the config)."""

    id: str
    """Its UUID (``GPU-…``, ``MIG-…``)."""
    name: str
    memory: int
    """Bytes."""
    sm: int
    """Streaming multiprocessors (compute units)."""
    pci_bus_id: str | None = None
    numa: int | None = None
    parent: str | None = None
    """For a MIG instance: the id of the GPU it is a slice of."""
    mig: bool = False
    """A GPU in MIG mode: its instances are the devices offered, not itself."""
    declared: bool = False
    """From the config, not found on the machine."""

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "memory": self.memory,
            "sm": self.sm,
            "pci_bus_id": self.pci_bus_id,
            "numa": self.numa,
            "parent": self.parent,
            "mig": self.mig,
            "declared": self.declared,
        }


@dataclass(frozen=True)
class Inventory:
    """What an accelerator found on this node: every device, the units it offers for
    scheduling (``used`` 0), and one line for people."""

    devices: tuple[DeviceInfo, ...] = ()
    units: tuple[SlotUnit, ...] = ()
    status: str = ""
    """``2 devices (NVML 12.550.54, driver 550.54)``, or why there are none (``no devices:
    the NVIDIA driver is not loaded``)."""


class Accelerator(Protocol):
    """A plugin's accelerator on one node (built by :attr:`AcceleratorSpec.factory`)."""

    def inventory(self) -> Inventory:
        """Discover the devices. Called in a worker thread when the daemon starts (it may
        block); must not raise for a machine without the devices (say why in
        :attr:`Inventory.status`)."""
        ...

    def usage(self, devices: Sequence[str]) -> Mapping[str, Mapping[str, Any]]:
        """What each of ``devices`` is doing now (``utilization`` %, ``memory_used``
        bytes…), by device id; a device that cannot be asked is missing. Called in a worker
        thread (``vfd session info``)."""
        ...


@dataclass(frozen=True)
class AcceleratorSpec:
    """An accelerator a plugin offers (``vfd_register_accelerators``): its slots and how to
    find its devices. What a session's container gets for the devices it holds is the
    plugin's ``vfd_container_spec`` (:attr:`SessionView.allocation`)."""

    name: str
    """``[a-z][a-z0-9-]*``: the prefix of its slots' names."""
    description: str
    slots: tuple[SlotSpec, ...]
    factory: Callable[[Mapping[str, Any]], Accelerator]
    """Builds it from its options (the ``[plugins.<plugin>]`` section)."""
