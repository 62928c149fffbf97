"""The container runtime: a small typed wrapper over the ``docker`` SDK, the only module that
imports it.

Every function here that talks to docker blocks: the daemon calls it through
``runtime.current().run(Pool.DOCKER, ...)`` (short calls), or reads a stream with
:func:`stream_read` (long reads — a followed log, an exec's output, a shell — on a limiter of
their own, so that streams left open cannot take the threads short calls need).

Docker's exceptions are translated at ONE place, :func:`translated`, into :class:`VfdError`
codes (``runtime_unavailable``, ``image_not_found``, ``session_not_running``,
``invalid_argument``); the messages say in plain words what docker said.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import docker
import docker.errors
import requests.exceptions
from anyio.lowlevel import RunVar

from vfd.daemon import runtime
from vfd.daemon.runtime import Pool
from vfd.daemon.services.context import Daemon
from vfd.errors import ErrorCode, VfdError

T = TypeVar("T")

AVAILABLE_TTL = 5.0
"""Seconds :func:`available` keeps its answer (a request storm must not ping docker each)."""
STREAM_THREADS = 256
"""Threads that may sit in long stream reads at once (followed logs, exec output, shells)."""


@contextlib.contextmanager
def translated(what: str = "docker") -> Iterator[None]:
    """Run the block, turning docker's exceptions into VfdErrors — the one choke point.

    ``what`` names the thing asked for in messages (``container 1a2b…``, ``image busybox``).
    """
    try:
        yield
    except VfdError:
        raise
    except docker.errors.ImageNotFound as exc:
        raise VfdError(
            ErrorCode.IMAGE_NOT_FOUND,
            f"{what}: no such image on this node ({_explain(exc)}); `vfd image list` shows "
            "the images sessions may use",
        ) from None
    except docker.errors.NotFound as exc:
        raise VfdError(ErrorCode.SESSION_NOT_RUNNING, f"{what} is gone ({_explain(exc)})") from None
    except docker.errors.APIError as exc:
        status = exc.status_code or 500
        if status == 409:  # conflict: not running, paused, being removed
            raise VfdError(ErrorCode.SESSION_NOT_RUNNING, f"{what}: {_explain(exc)}") from None
        if 400 <= status < 500:
            raise VfdError(
                ErrorCode.INVALID_ARGUMENT, f"docker refused {what}: {_explain(exc)}"
            ) from None
        raise VfdError(
            ErrorCode.RUNTIME_UNAVAILABLE, f"docker failed on {what}: {_explain(exc)}"
        ) from None
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise VfdError(
            ErrorCode.RUNTIME_UNAVAILABLE,
            f"docker does not answer ({exc.__class__.__name__}: {exc}); "
            "apt-get install docker.io; start dockerd",
        ) from None


def _explain(exc: docker.errors.APIError) -> str:
    text = exc.explanation
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return str(text or exc).strip()


# -- the client ---------------------------------------------------------------------------

_clients: dict[str, docker.DockerClient] = {}
_clients_lock = threading.Lock()


def client(url: str) -> docker.DockerClient:
    """The client of the engine at ``url`` (one per URL per process; thread-safe to share).

    Blocking only when first made (it does not connect: the first call does)."""
    with _clients_lock:
        found = _clients.get(url)
        if found is None:
            with translated(f"docker at {url}"):
                found = docker.DockerClient(base_url=url, timeout=120)
            _clients[url] = found
        return found


def ping(url: str) -> None:
    if url.startswith("unix://"):
        _probe_unix(url.removeprefix("unix://"))
    with translated(f"docker at {url}"):
        client(url).ping()


def _probe_unix(path: str) -> None:
    """Connect to docker's socket ourselves first: docker-py leaves the socket of a failed
    connect to the garbage collector."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(5)
        try:
            probe.connect(path)
        except OSError as exc:
            raise VfdError(
                ErrorCode.RUNTIME_UNAVAILABLE,
                f"docker does not answer at unix://{path} ({exc.strerror or exc}); "
                "apt-get install docker.io; start dockerd",
            ) from None


_available: dict[str, tuple[float, str | None]] = {}


async def available(daemon: Daemon) -> str | None:
    """None when sessions may run on this node; else a one-line reason saying how to enable
    them. Answers are kept :data:`AVAILABLE_TTL` seconds."""
    options = daemon.config.sessions
    if options.enabled == "off":
        return 'sessions are off on this node ([sessions] enabled = "off" in vfd.toml)'
    url = options.docker_url
    now = time.monotonic()
    cached = _available.get(url)
    if cached is not None and now - cached[0] < AVAILABLE_TTL:
        return cached[1]
    try:
        await runtime.current().run(Pool.DOCKER, ping, url)
        reason = None
    except VfdError:
        reason = (
            f"docker is not answering at {url}: apt-get install docker.io; start dockerd "
            "(or set [sessions] docker_url)"
        )
    _available[url] = (time.monotonic(), reason)
    return reason


# -- images -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageInfo:
    id: str
    tags: tuple[str, ...]
    size: int
    created: str


def image_exists(url: str, image: str) -> bool:
    with translated(f"image {image}"):
        try:
            client(url).images.get(image)
        except docker.errors.ImageNotFound:
            return False
        return True


async def image_present(daemon: Daemon, image: str) -> bool:
    """Whether ``image`` is present in the local engine (sessions never pull)."""
    return await runtime.current().run(
        Pool.DOCKER, image_exists, daemon.config.sessions.docker_url, image
    )


def list_images(url: str) -> list[ImageInfo]:
    with translated("the image list"):
        raw = client(url).api.images()
    return [
        ImageInfo(
            id=str(item.get("Id", "")),
            tags=tuple(t for t in item.get("RepoTags") or () if t != "<none>:<none>"),
            size=int(item.get("Size") or 0),
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(item.get("Created", 0)))),
        )
        for item in raw
    ]


# -- containers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Bind:
    source: str
    target: str
    read_only: bool


@dataclass
class ContainerSpec:
    """Everything vfd sets on a session's container (launcher builds it)."""

    image: str
    command: Sequence[str]
    name: str
    hostname: str
    user: str
    group_add: Sequence[int]
    env: Mapping[str, str]
    labels: Mapping[str, str]
    binds: Sequence[Bind]
    nano_cpus: int
    mem_limit: int
    working_dir: str = "/home/work"
    device_requests: Sequence[Mapping[str, Any]] = ()
    limits: Mapping[str, int] = field(default_factory=dict)
    cpuset_cpus: str | None = None
    """The CPUs it may run on (an accelerator plugin's: its devices' NUMA node)."""


def create(url: str, spec: ContainerSpec) -> str:
    """Make (not start) the container; its id."""
    host: dict[str, Any] = {
        "init": True,
        "security_opt": ["no-new-privileges"],
        "cap_drop": ["ALL"],
        "nano_cpus": spec.nano_cpus,
        "mounts": [
            docker.types.Mount(target=b.target, source=b.source, type="bind", read_only=b.read_only)
            for b in spec.binds
        ],
        **dict(spec.limits),
    }
    if spec.group_add:
        host["group_add"] = [str(g) for g in spec.group_add]
    if spec.mem_limit > 0:
        host["mem_limit"] = spec.mem_limit
        host["memswap_limit"] = spec.mem_limit
    if spec.cpuset_cpus:
        host["cpuset_cpus"] = spec.cpuset_cpus
    if spec.device_requests:
        host["device_requests"] = [docker.types.DeviceRequest(**r) for r in spec.device_requests]
    with translated(f"the container of image {spec.image}"):
        api = client(url).api  # the low-level call: no inspect of what was just made
        made = api.create_container(
            spec.image,
            command=list(spec.command) or None,
            name=spec.name,
            hostname=spec.hostname,
            user=spec.user,
            environment=dict(spec.env),
            labels=dict(spec.labels),
            working_dir=spec.working_dir,
            detach=True,
            host_config=api.create_host_config(**host),
        )
    return str(made["Id"])


def start(url: str, container_id: str) -> None:
    with translated(f"container {container_id[:12]}"):
        client(url).api.start(container_id)


@dataclass(frozen=True)
class ContainerState:
    id: str
    running: bool
    exit_code: int
    oom_killed: bool
    error: str
    labels: Mapping[str, str]


def state(url: str, container_id: str) -> ContainerState | None:
    """The container's state; None when it does not exist."""
    try:
        with translated(f"container {container_id[:12]}"):
            raw = client(url).api.inspect_container(container_id)
    except VfdError as exc:
        if exc.code is ErrorCode.SESSION_NOT_RUNNING:
            return None
        raise
    st = raw.get("State") or {}
    return ContainerState(
        id=str(raw.get("Id", container_id)),
        running=bool(st.get("Running")) or bool(st.get("Restarting")),
        exit_code=int(st.get("ExitCode") or 0),
        oom_killed=bool(st.get("OOMKilled")),
        error=str(st.get("Error") or ""),
        labels=dict((raw.get("Config") or {}).get("Labels") or {}),
    )


def node_containers(url: str, node: str) -> list[ContainerState]:
    """Every container (running or not) labelled ``vfd.node=<node>``."""
    with translated(f"the containers of node {node}"):
        raw = client(url).api.containers(all=True, filters={"label": f"vfd.node={node}"})
    return [
        ContainerState(
            id=str(c["Id"]),
            running=c.get("State") == "running",
            exit_code=0,
            oom_killed=False,
            error="",
            labels=dict(c.get("Labels") or {}),
        )
        for c in raw
    ]


def cpu_seconds(url: str, container_id: str) -> float | None:
    """The cpu time the container has used so far, in seconds (docker's one-shot stats);
    None when it is not running or docker reports no figure."""
    try:
        with translated(f"container {container_id[:12]}"):
            raw = client(url).api.stats(container_id, stream=False, one_shot=True)
    except VfdError as exc:
        if exc.code is ErrorCode.SESSION_NOT_RUNNING:
            return None
        raise
    usage = ((raw or {}).get("cpu_stats") or {}).get("cpu_usage") or {}
    total = usage.get("total_usage")
    return None if not isinstance(total, int | float) else total / 1e9


def stop(url: str, container_id: str, timeout: float) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; a container already gone is fine."""
    with contextlib.suppress(VfdError), translated(f"container {container_id[:12]}"):
        client(url).api.stop(container_id, timeout=max(0, round(timeout)))


def kill(url: str, container_id: str) -> None:
    with contextlib.suppress(VfdError), translated(f"container {container_id[:12]}"):
        client(url).api.kill(container_id)


def remove(url: str, container_id: str) -> None:
    """Remove the container (forced); a container already gone is fine."""
    try:
        with translated(f"container {container_id[:12]}"):
            client(url).api.remove_container(container_id, force=True)
    except VfdError as exc:
        if exc.code is not ErrorCode.SESSION_NOT_RUNNING:
            raise


# -- streams: logs and exec ---------------------------------------------------------------

_FRAME = struct.Struct(">BxxxL")


class Stream:
    """A raw connection to docker carrying a container's output (multiplexed unless ``tty``)
    and, for an interactive exec, its input. :meth:`abort` may be called from any thread: it
    shuts the socket down so that a read blocked in another thread returns at once."""

    def __init__(self, sock: socket.socket, keep: Any, owner: Any, *, tty: bool) -> None:
        self.sock = sock
        self.tty = tty
        self._keep = keep  # the HTTP response that owns the socket: closed with it
        self._owner = owner  # the stream's own API client (its connection is nobody else's)
        self._closed = False
        self._lock = threading.Lock()
        self._reading = False
        self._close_pending = False

    def read(self) -> tuple[int, bytes] | None:
        """The next (1 = stdout, 2 = stderr) chunk; None at the end (or once aborted)."""
        with self._lock:
            if self._closed:
                return None
            self._reading = True
        try:
            return self._read()
        finally:
            with self._lock:
                self._reading = False
                pending = self._close_pending
            if pending:
                self._release()

    def _read(self) -> tuple[int, bytes] | None:
        try:
            if self.tty:
                data = self.sock.recv(65536)
                return (1, data) if data else None
            head = self._exactly(_FRAME.size)
            if head is None:
                return None
            kind, size = _FRAME.unpack(head)
            payload = self._exactly(size)
            if payload is None:
                return None
            return (2 if kind == 2 else 1, payload)
        except OSError:
            return None

    def _recv(self, n: int) -> bytes:
        """Up to ``n`` bytes of the multiplexed stream; empty at its end."""
        return self.sock.recv(n)

    def _exactly(self, n: int) -> bytes | None:
        buf = bytearray()
        while len(buf) < n:
            got = self._recv(n - len(buf))
            if not got:
                return None
            buf += got
        return bytes(buf)

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Abort and release the connection — at once, or by the read in progress when it
        returns (a descriptor is never closed under a thread still reading it)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._reading:
                self._close_pending = True
        self.abort()
        if not self._close_pending:
            self._release()

    def _release(self) -> None:
        with contextlib.suppress(Exception):
            self._keep.close()
        with contextlib.suppress(Exception):
            self._owner.close()
        with contextlib.suppress(OSError):
            self.sock.close()


def _raw_socket(thing: Any) -> socket.socket:
    """The socket.socket under what docker-py hands back for a hijacked connection."""
    sock = getattr(thing, "_sock", thing)
    if not isinstance(sock, socket.socket):
        raise VfdError(ErrorCode.RUNTIME_UNAVAILABLE, "docker's stream is not a socket")
    return sock


def _stream_client(url: str) -> Any:
    """An API client of its own for one stream: a stream's connection is never returned to a
    shared pool (closing it could not hurt another call), and it has no read timeout (a
    followed log may be quiet for hours)."""
    version = client(url).api.api_version
    return docker.APIClient(base_url=url, version=version, timeout=None)


def open_logs(url: str, container_id: str, *, follow: bool) -> Stream:
    """The container's output (stdout and stderr kept apart), from its start."""
    api = _stream_client(url)
    with _closing_on_error(api), translated(f"container {container_id[:12]}"):
        response = api._get(
            api._url("/containers/{0}/logs", container_id),
            params={"stdout": 1, "stderr": 1, "follow": int(follow), "timestamps": 0},
            stream=True,
        )
        api._raise_for_status(response)
        raw = response.raw
        fp = getattr(getattr(raw, "_fp", None), "fp", None)
        sock = _raw_socket(getattr(fp, "raw", None))
    if response.headers.get("Transfer-Encoding", "").lower() == "chunked":
        return _ChunkedStream(raw, sock, response, api)
    return Stream(sock, response, api, tty=False)


@contextlib.contextmanager
def _closing_on_error(api: Any) -> Iterator[None]:
    try:
        yield
    except BaseException:
        api.close()
        raise


class _ChunkedStream(Stream):
    """A log stream sent with chunked transfer encoding: read through the HTTP response (which
    undoes the chunking); the socket is only used to abort."""

    def __init__(self, raw: Any, sock: socket.socket, keep: Any, owner: Any) -> None:
        super().__init__(sock, keep, owner, tty=False)
        self._raw = raw

    def _recv(self, n: int) -> bytes:
        got: bytes = self._raw.read(n)
        return got


@dataclass
class Exec:
    id: str
    stream: Stream


def exec_open(
    url: str,
    container_id: str,
    command: Sequence[str],
    *,
    user: str,
    env: Mapping[str, str],
    workdir: str | None,
    tty: bool,
) -> Exec:
    """Start ``command`` in the running container; its output (and input when ``tty``)."""
    api = _stream_client(url)
    with _closing_on_error(api), translated(f"container {container_id[:12]}"):
        made = api.exec_create(
            container_id,
            list(command),
            stdout=True,
            stderr=True,
            stdin=tty,
            tty=tty,
            environment=dict(env),
            workdir=workdir,
            user=user,
        )
        exec_id = str(made["Id"])
        sock = api.exec_start(exec_id, tty=tty, socket=True)
        raw = _raw_socket(sock)
    response = getattr(sock, "_response", None)
    return Exec(id=exec_id, stream=Stream(raw, response, api, tty=tty))


def exec_state(url: str, exec_id: str) -> tuple[bool, int | None, int]:
    """(running, exit code, host pid) of an exec."""
    with translated(f"exec {exec_id[:12]}"):
        raw = client(url).api.exec_inspect(exec_id)
    code = raw.get("ExitCode")
    return (
        bool(raw.get("Running")),
        (int(code) if code is not None else None),
        int(raw.get("Pid") or 0),
    )


def exec_resize(url: str, exec_id: str, cols: int, rows: int) -> None:
    with contextlib.suppress(VfdError), translated(f"exec {exec_id[:12]}"):
        client(url).api.exec_resize(exec_id, height=rows, width=cols)


def exec_detached(
    url: str,
    container_id: str,
    command: Sequence[str],
    *,
    user: str,
    env: Mapping[str, str],
    workdir: str | None,
) -> str:
    """Start ``command`` in the running container without following it (a service app's
    server); its exec id (:func:`exec_state` gives its host pid)."""
    with translated(f"container {container_id[:12]}"):
        api = client(url).api
        made = api.exec_create(
            container_id,
            list(command),
            stdout=False,
            stderr=False,
            environment=dict(env),
            workdir=workdir,
            user=user,
        )
        exec_id = str(made["Id"])
        api.exec_start(exec_id, detach=True)
    return exec_id


def image_labels(url: str, image: str) -> dict[str, str]:
    """The labels of a local image."""
    with translated(f"image {image}"):
        raw = client(url).api.inspect_image(image)
    return dict((raw.get("Config") or {}).get("Labels") or {})


def network_namespace(url: str, container_id: str) -> str:
    """The path of the running container's network namespace: docker's own file for it
    (``SandboxKey``) when this process sees it, else ``/proc/PID/ns/net`` of its first
    process. ``session_not_running`` when it does not run."""
    with translated(f"container {container_id[:12]}"):
        raw = client(url).api.inspect_container(container_id)
    st = raw.get("State") or {}
    pid = int(st.get("Pid") or 0)
    if not st.get("Running") or pid <= 0:
        raise VfdError(ErrorCode.SESSION_NOT_RUNNING, f"container {container_id[:12]} does not run")
    key = str((raw.get("NetworkSettings") or {}).get("SandboxKey") or "")
    if key.startswith("/") and os.path.exists(key):
        return key
    return f"/proc/{pid}/ns/net"


def path_exists(url: str, container_id: str, path: str) -> bool:
    """Whether ``path`` exists in the container (an archive stat, no process run)."""
    try:
        with translated(f"container {container_id[:12]}"):
            client(url).api.get_archive(container_id, path)[0].close()
    except VfdError:
        return False
    return True


_stream_limiter: RunVar[anyio.CapacityLimiter] = RunVar("vfd_docker_streams")


async def stream_read(fn: Callable[[], T]) -> T:
    """Call blocking ``fn`` (a read on a :class:`Stream`) on the stream threads. Cancelling
    the caller abandons the read: the caller must then :meth:`Stream.close` the stream, which
    makes the read return and free its thread."""
    try:
        limiter = _stream_limiter.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(STREAM_THREADS)
        _stream_limiter.set(limiter)
    return await anyio.to_thread.run_sync(fn, limiter=limiter, abandon_on_cancel=True)
