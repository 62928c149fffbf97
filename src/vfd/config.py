"""Configuration: one TOML file, ``VFD_*`` environment overrides, embedded defaults.

Where things are found, in order of precedence (later wins):

1. embedded defaults — system paths (``/var/lib/vfd``, ``/run/vfd``) or, with a state
   directory (``--state-dir DIR`` / ``VFD_STATE_DIR``), everything under that directory;
2. the config file — ``--config FILE``, else ``VFD_CONFIG``, else ``DIR/vfd.toml`` when a state
   directory is used and has one, else ``/etc/vfd/vfd.toml`` when it exists;
3. ``VFD_*`` environment variables (``VFD_DATABASE_URL``, ``VFD_MOUNT_POINT``, ...).

Example file (also shipped as ``systemd/vfd.toml.example``)::

    database_url = "postgresql+psycopg://vfd@db/vfd"
    mount_point = "/var/lib/vfd/mnt"
    api_socket = "/run/vfd/vfd.sock"
    mountd_socket = "/run/vfd/mountd.sock"
    tcp_listen = "0.0.0.0:8090"         # optional; bearer tokens and the web console
    default_host = "local"
    default_uid = 1000
    default_gid = 1000
    project_gid_range = [200000, 299999]    # new projects get the lowest free gid in it

    [hosts]                             # a path: storage on this node's own disk
    local = "/var/lib/vfd/hosts/local"
    nfs = { path = "/mnt/nfs/vfd", shared = true }   # the same storage on every node

    [default_policy]
    max_vfolder_count = 0               # 0 = unlimited
    max_quota_scope_size = 0            # bytes; 0 = unlimited
    allowed_hosts = []                  # empty = every host

    [workers]                           # threads per kind of blocking work in the daemon
    store = 8
    files = 16
    transfer = 16                       # one thread per large upload or download while it runs
    mountd_wait = 30.0                  # seconds before a stalled mount answers 503

    [limits]                            # what one user or connection may take of the daemon
    user_files = 8                      # concurrent files-pool requests per user (429 beyond)
    peer_connections = 256              # connections per peer uid (unix) or IP (TCP)
    header_timeout = 30.0

    [plugins]
    block = ["some-plugin"]             # never imported (entry-point or plugin name)
    trace = false                       # log every hook call with its plugin and duration

    [plugins.example]                   # one table per plugin, checked by that plugin
    some_key = "value"

    [sessions]
    enabled = "auto"                    # "auto": when docker answers; "on": required; "off"
    docker_url = "unix:///var/run/docker.sock"
    node = "node-1"                     # this node's name (default: the host name)
    cpu = 0                             # cpus sessions may use; 0 = all of the machine's
    memory = 0                          # bytes sessions may use; 0 = all of the machine's
    scheduler = "fifo"                  # a scheduler some plugin registers
    group = "default"                   # resource group: this node joins it first; vfd run asks it
    heartbeat_interval = 5.0            # seconds; a node silent for 3 intervals takes nothing new
    reap_interval = 10.0                # seconds between idle/lifetime reaper passes
    idle_cpu = 0.05                     # share of one cpu below which a session is idle
    leader_lock = 0x76666401            # PostgreSQL advisory lock key of the scheduling leader
    stop_timeout = 10.0                 # seconds between SIGTERM and SIGKILL on destroy
    scratch_dir = "/var/lib/vfd/sessions"   # each session's /home/work

    [fuse]
    entry_timeout = 1.0
    attr_timeout = 1.0
    poll = 0.00005
    fast_path = "auto"                  # "off": pyfuse3's public API only
    fd_cache = "auto"                   # descriptors mountd keeps open for inodes (or a number)
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vfd.errors import ErrorCode, VfdError

SYSTEM_CONFIG = Path("/etc/vfd/vfd.toml")
SYSTEM_STATE = Path("/var/lib/vfd")
SYSTEM_RUN = Path("/run/vfd")
PROJECT_GID_RANGE = (200000, 299999)
FD_CACHE_MIN = 16
"""The smallest ``[fuse] fd_cache``."""


@dataclass(frozen=True)
class PolicyDefaults:
    """The resource policy applied to users who have none assigned."""

    max_vfolder_count: int = 0
    max_quota_scope_size: int = 0
    allowed_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class FuseOptions:
    """Tuning of the FUSE mount."""

    entry_timeout: float = 1.0
    attr_timeout: float = 1.0
    flush_interval: float = 5.0
    """Seconds between flushes of quota usage counters to the store."""
    poll: float = 0.00005
    """Seconds mountd keeps polling for the next request before it sleeps (0: never polls)."""
    fast_path: str = "auto"
    """``auto``: mountd's low-level fast path (``vfd.fuse.libfuse``) runs where pyfuse3 and
    libfuse are verified releases; ``off``: never (also ``VFD_FUSE_FAST_PATH``)."""
    fd_cache: int | None = None
    """How many inode descriptors mountd keeps open (``vfd.fuse.handles``), at least
    :data:`FD_CACHE_MIN`; None (``"auto"``): half the open-file limit less a reserve, at most
    65,536 (also ``VFD_FUSE_FD_CACHE``)."""


@dataclass(frozen=True)
class WorkerLimits:
    """Worker threads per kind of blocking work in the daemon (``[workers]``).

    Each kind has its own pool, so a hung mount (files), a stalled mountd or docker call cannot
    take the threads that resolve callers and read the store.
    """

    identity: int = 4
    """Resolving the caller of each request (a store read)."""
    store: int = 8
    """Folder records, sharing, users, policies."""
    files: int = 16
    """File operations through the views and bind mounts: may block on the FUSE mount."""
    mountd: int = 4
    """Calls on mountd's control socket (folder lifecycle, quota, rescans)."""
    transfer: int = 16
    """Uploads and downloads that move their bytes between the connection and the file in a
    thread of their own, for the whole transfer (large files, archives): each holds one thread
    of this pool while it runs, so long transfers never take the ``files`` threads."""
    docker: int = 8
    """The container runtime (sessions)."""
    mountd_wait: float = 30.0
    """Seconds a request waits for a call into the ``files`` or ``mountd`` pool (one that
    blocks on the mount or on mountd) before it answers ``503 mountd_unavailable``, saying
    that the operation may still complete; the call keeps its thread until it returns."""


@dataclass(frozen=True)
class RequestLimits:
    """What one user or one connection may take of the daemon (``[limits]``;
    docs/operations.md "Limits").

    Without these a single local user could hold every worker thread, or every descriptor of
    the daemon, with requests that never end.
    """

    user_files: int | None = None
    """Requests of one user that may use the files pool at once (the next is answered
    ``429 too_many_requests``); ``None``: half of ``[workers] files``, at least 1."""
    user_mountd: int | None = None
    """The same for the mountd pool; ``None``: half of ``[workers] mountd``, at least 1."""
    user_transfer: int | None = None
    """The same for the transfer pool; ``None``: half of ``[workers] transfer``, at least 1."""
    retry_after: int = 1
    """Seconds a ``429`` answer asks the client to wait (``Retry-After``)."""
    peer_connections: int = 256
    """Open connections per peer uid on the unix socket, per address on TCP; more are
    answered ``429`` and closed at once."""
    header_timeout: float = 30.0
    """Seconds a connection may take to send a complete request head."""
    body_timeout: float = 60.0
    """Seconds a request body may stall (nothing arrives while the daemon waits for it)."""
    keepalive_timeout: int = 5
    """Seconds an idle connection is kept open between requests."""
    backlog: int = 4096
    """Listen backlog of the API sockets (the kernel caps it at ``net.core.somaxconn``)."""

    def user_cap(self, pool: str, pool_size: int) -> int:
        """The per-user cap of ``pool`` (``files``, ``mountd`` or ``transfer``) for a pool
        of that size."""
        caps = {"files": self.user_files, "mountd": self.user_mountd}
        cap = caps.get(pool, self.user_transfer)
        return cap if cap is not None else max(1, pool_size // 2)


@dataclass(frozen=True)
class SessionOptions:
    """``[sessions]``: the container runtime on this node (docs/sessions.md)."""

    enabled: str = "auto"
    """``auto`` (sessions when docker answers), ``on`` (docker required), ``off``."""
    docker_url: str = "unix:///var/run/docker.sock"
    node: str = ""
    """This node's name; empty = the host name."""
    cpu: float = 0.0
    """CPUs sessions may use on this node; 0 = every CPU of the machine."""
    memory: int = 0
    """Bytes sessions may use on this node; 0 = the machine's memory."""
    scheduler: str = "fifo"
    stop_timeout: float = 10.0
    scratch_dir: Path | None = None
    """Where each session's ``/home/work`` is made; None = ``<state>/sessions``."""
    schedule_interval: float = 1.0
    """Seconds between scheduler passes when nothing wakes it sooner."""
    dotfile_max_size: int = 65536
    dotfile_max_count: int = 100
    group: str = "default"
    """The resource group this node joins when it first registers, and the group ``vfd run``
    asks for when it names none."""
    heartbeat_interval: float = 5.0
    """Seconds between this node's heartbeats in the store; a node silent for three
    intervals is dead and takes no new sessions."""
    reap_interval: float = 10.0
    """Seconds between passes of the idle and lifetime reaper."""
    idle_cpu: float = 0.05
    """Below this share of one cpu over a reaper interval, a session counts as idle."""
    leader_lock: int = 0x76666401
    """The PostgreSQL advisory lock key the scheduling leader holds."""


@dataclass(frozen=True)
class AppOptions:
    """``[apps]``: the app servers the daemon runs for sessions (docs/apps.md)."""

    ports: tuple[int, int] = (30000, 30999)
    """The TCP ports app servers listen on (``"30000-30999"``), when the user's own is taken
    or none is asked for."""
    listen: str = "0.0.0.0"
    """The address app servers listen on."""
    public_host: str = ""
    """The host name printed in the commands that reach an app; empty = this host's name."""
    sftp_idle_timeout: float = 1800.0
    """Seconds an SFTP session may pass without a request before it ends itself; 0 = never."""
    max_storage_sessions: int = 2
    """Live storage-only sessions of a user without a resource policy; 0 = unlimited."""
    start_timeout: float = 10.0
    """Seconds an app server may take to say it serves."""
    stop_timeout: float = 5.0
    """Seconds between SIGTERM and SIGKILL when an app server is stopped."""
    service_ports: tuple[tuple[str, str], ...] = ()
    """``[apps.service_ports]``: ``"IMAGE-PATTERN" = "NAME:PROTOCOL:PORT,..."``, the services
    of images that declare none by label (the first pattern matching the session's image)."""


@dataclass(frozen=True)
class Config:
    """The settings every vfd process reads. Built by :func:`load_config`."""

    state_dir: Path | None
    config_file: Path | None
    database_url: str
    mount_point: Path
    api_socket: Path
    mountd_socket: Path
    tcp_listen: str | None
    hosts: dict[str, Path]
    default_host: str
    default_uid: int
    default_gid: int
    default_policy: PolicyDefaults = field(default_factory=PolicyDefaults)
    fuse: FuseOptions = field(default_factory=FuseOptions)
    workers: WorkerLimits = field(default_factory=WorkerLimits)
    limits: RequestLimits = field(default_factory=RequestLimits)
    project_gid_range: tuple[int, int] = PROJECT_GID_RANGE
    """The gids given to new projects: the lowest one that no other project and no host group
    (``getgrgid``) uses (docs/operations.md "Project groups")."""
    plugins: dict[str, dict[str, Any]] = field(default_factory=dict)
    """``[plugins.NAME]`` tables, one per plugin, handed to that plugin unchecked: vfd checks
    its own keys, each plugin its section."""
    plugin_block: tuple[str, ...] = ()
    """``[plugins] block``: plugins never imported (by entry-point or plugin name)."""
    plugin_trace: bool = False
    """``[plugins] trace``: log every hook call with its plugin and duration."""
    shared_hosts: frozenset[str] = frozenset()
    """The hosts marked ``shared = true``: the same storage on every node (a network file
    system); the others are this node's own (docs/nodes.md "Storage hosts")."""
    sessions: SessionOptions = field(default_factory=SessionOptions)
    apps: AppOptions = field(default_factory=AppOptions)
    log_level: str = "info"

    def host_path(self, name: str) -> Path:
        """The backing root of storage host ``name``."""
        try:
            return self.hosts[name]
        except KeyError:
            raise VfdError(
                ErrorCode.HOST_NOT_FOUND,
                f"unknown storage host {name!r}; known hosts: {', '.join(sorted(self.hosts))}",
                host=name,
            ) from None


_STR_KEYS = {"database_url", "tcp_listen", "default_host", "log_level"}
_PATH_KEYS = {"mount_point", "api_socket", "mountd_socket"}
_INT_KEYS = {"default_uid", "default_gid"}
_TABLE_KEYS = {
    "hosts",
    "default_policy",
    "fuse",
    "workers",
    "limits",
    "plugins",
    "sessions",
    "apps",
}
_RANGE_KEYS = {"project_gid_range"}
_KNOWN_KEYS = _STR_KEYS | _PATH_KEYS | _INT_KEYS | _TABLE_KEYS | _RANGE_KEYS
_LOG_LEVELS = {"debug", "info", "warning", "error"}


def _bad(key: str, source: str, why: str) -> VfdError:
    return VfdError(ErrorCode.CONFIG_INVALID, f"{source}: {key}: {why}", key=key, source=source)


def _defaults(state_dir: Path | None) -> dict[str, Any]:
    if state_dir is None:
        state, run = SYSTEM_STATE, SYSTEM_RUN
    else:
        state, run = state_dir, state_dir / "run"
    return {
        "database_url": f"sqlite:///{state / 'vfd.db'}",
        "mount_point": state / "mnt",
        "api_socket": run / "vfd.sock",
        "mountd_socket": run / "mountd.sock",
        "tcp_listen": None,
        "hosts": {"local": state / "hosts" / "local"},
        "default_host": "local",
        "default_uid": 1000,
        "default_gid": 1000,
        "log_level": "info",
    }


def _check_type(key: str, value: Any, source: str) -> Any:
    if key in _STR_KEYS:
        if not isinstance(value, str) or not value:
            raise _bad(key, source, "must be a non-empty string")
        if key == "log_level" and value not in _LOG_LEVELS:
            raise _bad(key, source, f"must be one of {', '.join(sorted(_LOG_LEVELS))}")
        return value
    if key in _PATH_KEYS:
        if not isinstance(value, str) or not value.startswith("/"):
            raise _bad(key, source, "must be an absolute path")
        return Path(value)
    if key in _INT_KEYS:
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**32:
            raise _bad(key, source, "must be an integer between 0 and 4294967295")
        return value
    raise AssertionError(key)


def _parse_gid_range(value: Any, source: str) -> tuple[int, int]:
    """``[min, max]`` (TOML) or ``"MIN-MAX"`` (environment): a range of gids 1..2^32-2."""
    if isinstance(value, str):
        low, sep, high = value.partition("-")
        value = [int(low), int(high)] if sep and low.isdigit() and high.isdigit() else None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        or not 1 <= value[0] <= value[1] < 2**32 - 1
    ):
        raise _bad(
            "project_gid_range",
            source,
            "must be [min, max] with 1 <= min <= max <= 4294967294 (in the environment: MIN-MAX)",
        )
    return (value[0], value[1])


def _parse_hosts(value: Any, source: str) -> dict[str, Path]:
    """``[hosts]``: ``name = "/path"`` or ``name = { path = "/path", shared = true }``."""
    if not isinstance(value, dict) or not value:
        raise _bad("hosts", source, "must be a table of name = absolute path, with at least one")
    hosts: dict[str, Path] = {}
    for name, entry in value.items():
        if not name.replace("-", "").replace("_", "").isalnum() or len(name) > 64:
            raise _bad(f"hosts.{name}", source, "host names use letters, digits, - and _")
        path = entry
        if isinstance(entry, dict):
            unknown = sorted(set(entry) - {"path", "shared"})
            if unknown:
                raise _bad(f"hosts.{name}.{unknown[0]}", source, "unknown key (path, shared)")
            if not isinstance(entry.get("shared", False), bool):
                raise _bad(f"hosts.{name}.shared", source, "must be true or false")
            path = entry.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            raise _bad(f"hosts.{name}", source, "must be an absolute path")
        hosts[name] = Path(path)
    return hosts


def _shared_hosts(value: Any) -> frozenset[str]:
    """The ``[hosts]`` entries marked ``shared = true`` (``value`` checked already)."""
    return frozenset(
        name for name, entry in value.items() if isinstance(entry, dict) and entry.get("shared")
    )


def _parse_policy(value: Any, source: str) -> PolicyDefaults:
    if not isinstance(value, dict):
        raise _bad("default_policy", source, "must be a table")
    out: dict[str, Any] = {}
    for key, item in value.items():
        full = f"default_policy.{key}"
        if key in ("max_vfolder_count", "max_quota_scope_size"):
            if not isinstance(item, int) or isinstance(item, bool) or item < 0:
                raise _bad(full, source, "must be a non-negative integer (0 = unlimited)")
            out[key] = item
        elif key == "allowed_hosts":
            if not isinstance(item, list) or not all(isinstance(h, str) for h in item):
                raise _bad(full, source, "must be a list of host names")
            out[key] = tuple(item)
        else:
            raise _bad(full, source, "unknown key")
    return PolicyDefaults(**out)


def _parse_fuse(value: Any, source: str) -> FuseOptions:
    if not isinstance(value, dict):
        raise _bad("fuse", source, "must be a table")
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key == "fast_path":
            out[key] = _fast_path(item, f"fuse.{key}", source)
            continue
        if key == "fd_cache":
            out[key] = _fd_cache(item, source)
            continue
        if key not in ("entry_timeout", "attr_timeout", "flush_interval", "poll"):
            raise _bad(f"fuse.{key}", source, "unknown key")
        if isinstance(item, bool) or not isinstance(item, int | float) or item < 0:
            raise _bad(f"fuse.{key}", source, "must be a non-negative number of seconds")
        out[key] = float(item)
    return FuseOptions(**out)


def _parse_workers(value: Any, source: str) -> WorkerLimits:
    if not isinstance(value, dict):
        raise _bad("workers", source, "must be a table")
    known = set(WorkerLimits.__dataclass_fields__)
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key not in known:
            raise _bad(f"workers.{key}", source, f"unknown key (known: {', '.join(sorted(known))})")
        if key == "mountd_wait":
            if isinstance(item, bool) or not isinstance(item, int | float) or not item > 0:
                raise _bad(f"workers.{key}", source, "must be a positive number of seconds")
            out[key] = float(item)
            continue
        if isinstance(item, bool) or not isinstance(item, int) or not 1 <= item <= 1024:
            raise _bad(f"workers.{key}", source, "must be an integer between 1 and 1024")
        out[key] = item
    return WorkerLimits(**out)


_LIMIT_INTS = {
    "user_files": (1, 1024),
    "user_mountd": (1, 1024),
    "user_transfer": (1, 1024),
    "retry_after": (1, 3600),
    "keepalive_timeout": (1, 3600),
    "peer_connections": (1, 1 << 20),
    "backlog": (1, 65535),
}
_LIMIT_SECONDS = {"header_timeout", "body_timeout"}


def _parse_limits(value: Any, source: str) -> RequestLimits:
    if not isinstance(value, dict):
        raise _bad("limits", source, "must be a table")
    out: dict[str, Any] = {}
    for key, item in value.items():
        full = f"limits.{key}"
        if key in _LIMIT_INTS:
            low, high = _LIMIT_INTS[key]
            if isinstance(item, bool) or not isinstance(item, int) or not low <= item <= high:
                raise _bad(full, source, f"must be an integer between {low} and {high}")
            out[key] = item
        elif key in _LIMIT_SECONDS:
            if isinstance(item, bool) or not isinstance(item, int | float) or not item > 0:
                raise _bad(full, source, "must be a positive number of seconds")
            out[key] = float(item)
        else:
            known = ", ".join(sorted({*_LIMIT_INTS, *_LIMIT_SECONDS}))
            raise _bad(full, source, f"unknown key (known: {known})")
    return RequestLimits(**out)


def _parse_plugins(
    value: Any, source: str
) -> tuple[dict[str, dict[str, Any]], tuple[str, ...], bool]:
    """``[plugins]``: ``block`` and ``trace``, and one ``[plugins.NAME]`` table per plugin."""
    if not isinstance(value, dict):
        raise _bad("plugins", source, "must be a table of [plugins.NAME] tables")
    out: dict[str, dict[str, Any]] = {}
    block: tuple[str, ...] = ()
    trace = False
    for name, section in value.items():
        if name == "block":
            if not isinstance(section, list) or not all(isinstance(b, str) and b for b in section):
                raise _bad("plugins.block", source, "must be a list of plugin names")
            block = tuple(section)
        elif name == "trace":
            if not isinstance(section, bool):
                raise _bad("plugins.trace", source, "must be true or false")
            trace = section
        elif not isinstance(section, dict):
            raise _bad(f"plugins.{name}", source, "must be a table ([plugins.NAME])")
        else:
            out[name] = section
    return out, block, trace


_GROUP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

_SESSION_NUMBERS = {
    "cpu": (0.0, 4096.0),
    "stop_timeout": (0.0, 3600.0),
    "schedule_interval": (0.01, 3600.0),
    "heartbeat_interval": (0.01, 3600.0),
    "reap_interval": (0.01, 86400.0),
    "idle_cpu": (0.0, 4096.0),
}
_SESSION_INTS = {
    "leader_lock": (-(2**63), 2**63 - 1),
    "memory": (0, 2**62),
    "dotfile_max_size": (1, 16 * 2**20),
    "dotfile_max_count": (1, 100000),
}


def _parse_sessions(value: Any, source: str) -> SessionOptions:
    if not isinstance(value, dict):
        raise _bad("sessions", source, "must be a table")
    out: dict[str, Any] = {}
    for key, item in value.items():
        full = f"sessions.{key}"
        if key == "enabled":
            if item not in ("auto", "on", "off"):
                raise _bad(full, source, 'must be "auto", "on" or "off"')
            out[key] = item
        elif key in ("docker_url", "node", "scheduler"):
            if not isinstance(item, str) or not item or len(item) > 128:
                raise _bad(full, source, "must be a non-empty string of at most 128 characters")
            out[key] = item
        elif key == "group":
            if not isinstance(item, str) or not _GROUP_NAME.fullmatch(item):
                raise _bad(
                    full, source, "must be a group name: 1-64 letters, digits, '.', '_' or '-'"
                )
            out[key] = item
        elif key == "scratch_dir":
            if not isinstance(item, str) or not item.startswith("/"):
                raise _bad(full, source, "must be an absolute path")
            out[key] = Path(item)
        elif key in _SESSION_NUMBERS:
            low, high = _SESSION_NUMBERS[key]
            if isinstance(item, bool) or not isinstance(item, int | float):
                raise _bad(full, source, f"must be a number between {low:g} and {high:g}")
            if not low <= item <= high:
                raise _bad(full, source, f"must be between {low:g} and {high:g}")
            out[key] = float(item)
        elif key in _SESSION_INTS:
            low_i, high_i = _SESSION_INTS[key]
            if isinstance(item, bool) or not isinstance(item, int) or not low_i <= item <= high_i:
                raise _bad(full, source, f"must be an integer between {low_i} and {high_i}")
            out[key] = item
        else:
            known = ", ".join(sorted({*SessionOptions.__dataclass_fields__}))
            raise _bad(full, source, f"unknown key (known: {known})")
    return SessionOptions(**out)


_APP_NUMBERS = {
    "sftp_idle_timeout": (0.0, 30 * 86400.0),
    "start_timeout": (0.1, 600.0),
    "stop_timeout": (0.0, 600.0),
}


def _parse_ports(value: Any, key: str, source: str) -> tuple[int, int]:
    """``"LOW-HIGH"`` (or one port) as a range of TCP ports."""
    why = 'must be a port range "LOW-HIGH" with 1 <= LOW <= HIGH <= 65535'
    if not isinstance(value, str):
        raise _bad(key, source, why)
    low_s, _, high_s = value.partition("-")
    try:
        low, high = int(low_s), int(high_s or low_s)
    except ValueError:
        raise _bad(key, source, why) from None
    if not 1 <= low <= high <= 65535:
        raise _bad(key, source, why)
    return low, high


def _service_ports(value: Any, key: str, source: str) -> tuple[tuple[str, str], ...]:
    """``[apps.service_ports]``: image patterns to service declarations, each checked."""
    from vfd.apps.service_ports import parse

    if not isinstance(value, dict):
        raise _bad(key, source, 'must be a table of "IMAGE-PATTERN" = "NAME:PROTOCOL:PORT,..."')
    out: list[tuple[str, str]] = []
    for pattern, text in value.items():
        if not pattern or not isinstance(text, str):
            raise _bad(f"{key}.{pattern}", source, 'must be "NAME:PROTOCOL:PORT,..."')
        try:
            parse(text, source=f"[apps.service_ports] {pattern!r}")
        except VfdError as exc:
            raise _bad(f"{key}.{pattern}", source, exc.message) from None
        out.append((pattern, text))
    return tuple(out)


def _parse_apps(value: Any, source: str) -> AppOptions:
    if not isinstance(value, dict):
        raise _bad("apps", source, "must be a table")
    out: dict[str, Any] = {}
    for key, item in value.items():
        full = f"apps.{key}"
        if key == "ports":
            out[key] = _parse_ports(item, full, source)
        elif key in ("listen", "public_host"):
            if not isinstance(item, str) or len(item) > 253 or any(c.isspace() for c in item):
                raise _bad(full, source, "must be a host name or address (no spaces)")
            if key == "listen" and not item:
                raise _bad(full, source, "must not be empty")
            out[key] = item
        elif key in _APP_NUMBERS:
            low, high = _APP_NUMBERS[key]
            if isinstance(item, bool) or not isinstance(item, int | float):
                raise _bad(full, source, f"must be a number between {low:g} and {high:g}")
            if not low <= item <= high:
                raise _bad(full, source, f"must be between {low:g} and {high:g}")
            out[key] = float(item)
        elif key == "max_storage_sessions":
            if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item <= 10000:
                raise _bad(full, source, "must be an integer between 0 and 10000")
            out[key] = item
        elif key == "service_ports":
            out[key] = _service_ports(item, full, source)
        else:
            known = ", ".join(sorted({*AppOptions.__dataclass_fields__}))
            raise _bad(full, source, f"unknown key (known: {known})")
    return AppOptions(**out)


def _fast_path(value: Any, key: str, source: str) -> str:
    if value not in ("auto", "off"):
        raise _bad(key, source, 'must be "auto" or "off"')
    return str(value)


def _fd_cache(value: Any, source: str) -> int | None:
    """``[fuse] fd_cache``: "auto" (None) or a whole number of at least FD_CACHE_MIN; from
    the environment, the same as a string."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if value == "auto":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < FD_CACHE_MIN:
        raise _bad(
            "fuse.fd_cache",
            source,
            f'must be "auto" or a whole number of descriptors of at least {FD_CACHE_MIN}, '
            f"not {value!r}",
        )
    return value


def _env_overrides(env: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in _STR_KEYS | _PATH_KEYS | _INT_KEYS:
        name = f"VFD_{key.upper()}"
        if name in env:
            out[key] = env[name]
    if "VFD_HOSTS" in env:
        hosts: dict[str, str] = {}
        for part in filter(None, env["VFD_HOSTS"].split(",")):
            name, sep, path = part.partition("=")
            if not sep:
                raise _bad("hosts", "VFD_HOSTS", "expected NAME=PATH[,NAME=PATH...]")
            hosts[name.strip()] = path.strip()
        out["hosts"] = hosts
    return out


def find_config_file(
    config_file: Path | None, state_dir: Path | None, env: dict[str, str]
) -> Path | None:
    """The config file to read, or None when there is none (embedded defaults)."""
    if config_file is not None:
        return config_file
    if env.get("VFD_CONFIG"):
        return Path(env["VFD_CONFIG"])
    if state_dir is not None:
        candidate = state_dir / "vfd.toml"
        return candidate if candidate.exists() else None
    return SYSTEM_CONFIG if SYSTEM_CONFIG.exists() else None


def load_config(
    *,
    config_file: Path | None = None,
    state_dir: Path | None = None,
    env: dict[str, str] | None = None,
) -> Config:
    """Build the configuration; raise ``VfdError(CONFIG_INVALID)`` naming the key and file."""
    env = dict(os.environ) if env is None else env
    if state_dir is None and env.get("VFD_STATE_DIR"):
        state_dir = Path(env["VFD_STATE_DIR"])
    if state_dir is not None:
        state_dir = state_dir.absolute()
    values = _defaults(state_dir)
    policy, fuse, workers = PolicyDefaults(), FuseOptions(), WorkerLimits()
    limits = RequestLimits()
    gid_range = PROJECT_GID_RANGE
    plugins: dict[str, dict[str, Any]] = {}
    plugin_block: tuple[str, ...] = ()
    plugin_trace = False
    sessions = SessionOptions()
    apps = AppOptions()

    path = find_config_file(config_file, state_dir, env)
    if path is not None:
        import tomllib  # here: most CLI commands run with no config file to parse

        source = str(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise VfdError(
                ErrorCode.CONFIG_INVALID, f"config file {path} does not exist", source=source
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise VfdError(
                ErrorCode.CONFIG_INVALID, f"cannot read config file {path}: {exc}", source=source
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise VfdError(
                ErrorCode.CONFIG_INVALID, f"{path}: not valid TOML: {exc}", source=source
            ) from None
        for key, value in data.items():
            if key not in _KNOWN_KEYS:
                raise _bad(key, source, "unknown key")
            if key == "hosts":
                values["hosts"] = _parse_hosts(value, source)
                values["shared_hosts"] = _shared_hosts(value)
            elif key == "default_policy":
                policy = _parse_policy(value, source)
            elif key == "fuse":
                fuse = _parse_fuse(value, source)
            elif key == "workers":
                workers = _parse_workers(value, source)
            elif key == "limits":
                limits = _parse_limits(value, source)
            elif key == "plugins":
                plugins, plugin_block, plugin_trace = _parse_plugins(value, source)
            elif key == "sessions":
                sessions = _parse_sessions(value, source)
            elif key == "apps":
                apps = _parse_apps(value, source)
            elif key == "project_gid_range":
                gid_range = _parse_gid_range(value, source)
            else:
                values[key] = _check_type(key, value, source)

    if env.get("VFD_SESSIONS"):
        sessions = dataclasses.replace(
            sessions,
            enabled=_parse_sessions({"enabled": env["VFD_SESSIONS"]}, "VFD_SESSIONS").enabled,
        )
    if sessions.scratch_dir is None:
        state = SYSTEM_STATE if state_dir is None else state_dir
        sessions = dataclasses.replace(sessions, scratch_dir=state / "sessions")
    if "VFD_PROJECT_GID_RANGE" in env:
        gid_range = _parse_gid_range(env["VFD_PROJECT_GID_RANGE"], "VFD_PROJECT_GID_RANGE")
    if "VFD_FUSE_FAST_PATH" in env:
        fast = _fast_path(env["VFD_FUSE_FAST_PATH"], "fuse.fast_path", "VFD_FUSE_FAST_PATH")
        fuse = dataclasses.replace(fuse, fast_path=fast)
    if "VFD_FUSE_FD_CACHE" in env:
        fuse = dataclasses.replace(
            fuse, fd_cache=_fd_cache(env["VFD_FUSE_FD_CACHE"], "VFD_FUSE_FD_CACHE")
        )
    for key, value in _env_overrides(env).items():
        source = f"VFD_{key.upper()}"
        values[key] = (
            _parse_hosts(value, source) if key == "hosts" else _check_type(key, value, source)
        )
        if key == "hosts":  # VFD_HOSTS names a node's own storage
            values["shared_hosts"] = frozenset()

    if values["default_host"] not in values["hosts"]:
        raise _bad(
            "default_host",
            str(path) if path else "defaults",
            f"{values['default_host']!r} is not one of the hosts ({', '.join(values['hosts'])})",
        )
    for host in policy.allowed_hosts:
        if host not in values["hosts"]:
            raise _bad("default_policy.allowed_hosts", str(path), f"unknown host {host!r}")
    return Config(
        state_dir=state_dir,
        config_file=path,
        default_policy=policy,
        fuse=fuse,
        workers=workers,
        limits=limits,
        project_gid_range=gid_range,
        plugins=plugins,
        plugin_block=plugin_block,
        plugin_trace=plugin_trace,
        sessions=sessions,
        apps=apps,
        **values,
    )
