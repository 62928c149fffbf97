"""The daemon's live machinery: bounded worker pools and the task group owning background work.

Every blocking call of a request runs in a worker thread of the pool for its kind of work
(:class:`Pool`), each pool bounded by ``[workers]`` in the config. A kind that hangs — file I/O
on a stalled mount, a mountd that does not answer, docker — can use up its own pool only:
resolving callers and reading the store go on.

Background work (the systemd watchdog now; the scheduler loop, runtime reconciliation and the
idle reaper with sessions) runs as tasks of one task group, opened by the application's
lifespan before ``READY=1`` and cancelled when the daemon stops. A request that starts
long-running work hands it to :meth:`Runtime.spawn` so that it, too, ends with the daemon.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import ParamSpec, TypeVar

import anyio
import anyio.abc
import anyio.to_thread
from anyio.lowlevel import RunVar

from vfd.config import WorkerLimits

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

BackgroundTask = Callable[[], Awaitable[None]]


class Pool(enum.StrEnum):
    """A kind of blocking work, with a worker pool of its own (sizes: ``[workers]``)."""

    IDENTITY = "identity"  # resolving a request's caller
    STORE = "store"  # folder records, sharing, users, policies
    FILES = "files"  # file I/O through the views, bind mounts
    MOUNTD = "mountd"  # calls on mountd's control socket
    DOCKER = "docker"  # the container runtime


class Runtime:
    """Worker pools and the background task group of one running daemon (one event loop)."""

    def __init__(self, limits: WorkerLimits) -> None:
        self.limits = limits
        self._limiters = {pool: anyio.CapacityLimiter(getattr(limits, pool.value)) for pool in Pool}
        self._group: anyio.abc.TaskGroup | None = None

    async def run(self, pool: Pool, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Call blocking ``fn`` in a worker thread of ``pool``; waits for a free thread."""
        call = functools.partial(fn, *args, **kwargs)
        return await anyio.to_thread.run_sync(call, limiter=self._limiters[pool])

    def busy(self) -> dict[str, dict[str, float]]:
        """Threads in use and waiting callers per pool (for status and metrics)."""
        return {
            pool.value: {
                "size": limiter.total_tokens,
                "busy": limiter.borrowed_tokens,
                "waiting": limiter.statistics().tasks_waiting,
            }
            for pool, limiter in self._limiters.items()
        }

    def spawn(self, name: str, fn: BackgroundTask) -> None:
        """Run ``fn`` as a background task of the daemon: cancelled when the daemon stops; an
        exception it raises is logged and ends that task alone."""
        if self._group is None:
            raise RuntimeError("the daemon's task group is not running")
        self._group.start_soon(_guarded, name, fn, name=name)

    @contextlib.asynccontextmanager
    async def running(self, tasks: Iterable[tuple[str, BackgroundTask]]) -> AsyncIterator[None]:
        """Open the task group, start ``tasks``; on exit cancel every task and wait for them."""
        async with anyio.create_task_group() as group:
            self._group = group
            try:
                for name, fn in tasks:
                    self.spawn(name, fn)
                yield
            finally:
                self._group = None
                group.cancel_scope.cancel()


async def _guarded(name: str, fn: BackgroundTask) -> None:
    try:
        await fn()
    except Exception:
        log.exception("background task %s failed", name)


_current: RunVar[Runtime] = RunVar("vfd_runtime")


def install(runtime: Runtime) -> None:
    """Make ``runtime`` the one :func:`current` answers on this event loop."""
    _current.set(runtime)


def current() -> Runtime:
    """The runtime of the daemon on this event loop (one with default sizes when the app runs
    without its lifespan, as in-process tests do)."""
    try:
        return _current.get()
    except LookupError:
        runtime = Runtime(WorkerLimits())
        _current.set(runtime)
        return runtime
