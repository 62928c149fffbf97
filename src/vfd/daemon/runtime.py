"""The daemon's live machinery: bounded worker pools and the task group owning background work.

Every blocking call of a request runs in a worker thread of the pool for its kind of work
(:class:`Pool`), each pool bounded by ``[workers]`` in the config. A kind that hangs — file I/O
on a stalled mount, a mountd that does not answer, docker — can use up its own pool only:
resolving callers and reading the store go on.

One user cannot take a whole pool either: a request's first call into the ``files``,
``mountd`` or ``transfer`` pool takes one of its caller's slots for that pool (``[limits]
user_files``, ``user_mountd`` and ``user_transfer``, half the pool by default), held until
the request ends — its answer streamed — and a request that would pass the cap is answered
``429 too_many_requests`` with ``Retry-After`` at once, instead of queueing behind the
caller's own requests without end (:meth:`Runtime.user_slots`).

Background work (the systemd watchdog now; the scheduler loop, runtime reconciliation and the
idle reaper with sessions) runs as tasks of one task group, opened by the application's
lifespan before ``READY=1`` and cancelled when the daemon stops. A request that starts
long-running work hands it to :meth:`Runtime.spawn` so that it, too, ends with the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import functools
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable, Iterator
from typing import Any, Generic, ParamSpec, TypeVar, cast

import anyio
import anyio.abc
import anyio.to_thread
from anyio.lowlevel import RunVar

from vfd.config import RequestLimits, WorkerLimits
from vfd.errors import ErrorCode, VfdError

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
    TRANSFER = "transfer"  # a transfer's bytes between its connection and its file


CAPPED = (Pool.FILES, Pool.MOUNTD, Pool.TRANSFER)
"""The pools whose use is capped per user (the slow ones)."""


class _Slots:
    """The per-user slots one request holds, and the caps it was given."""

    def __init__(self, user: Hashable, caps: dict[Pool, int], retry_after: int) -> None:
        self.user = user
        self.caps = caps
        self.retry_after = retry_after
        self.held: set[Pool] = set()
        self.open = True


_request_slots: contextvars.ContextVar[_Slots | None] = contextvars.ContextVar(
    "vfd_request_slots", default=None
)


class Runtime:
    """Worker pools and the background task group of one running daemon (one event loop)."""

    def __init__(self, limits: WorkerLimits) -> None:
        self.limits = limits
        self._limiters = {pool: anyio.CapacityLimiter(getattr(limits, pool.value)) for pool in Pool}
        self._group: anyio.abc.TaskGroup | None = None
        self._in_use: dict[tuple[Pool, Hashable], int] = {}

    async def run(self, pool: Pool, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Call blocking ``fn`` in a worker thread of ``pool``; waits for a free thread.

        Inside a request (:meth:`user_slots`), the first call into a capped pool takes a slot
        of the caller's, or raises ``too_many_requests`` when the caller has none left.
        """
        if pool in CAPPED:
            self.take_slot(pool)
        call = functools.partial(fn, *args, **kwargs)
        return await anyio.to_thread.run_sync(call, limiter=self._limiters[pool])

    @contextlib.contextmanager
    def user_slots(self, user: Hashable, limits: RequestLimits) -> Iterator[None]:
        """Count the capped-pool work of the request running in this context (and of the
        tasks it starts, such as a streamed answer) against ``user``'s caps, until the block
        ends."""
        caps = {
            pool: limits.user_cap(pool.value, getattr(self.limits, pool.value)) for pool in CAPPED
        }
        slots = _Slots(user, caps, limits.retry_after)
        _request_slots.set(slots)
        try:
            yield
        finally:
            slots.open = False
            for pool in slots.held:
                key = (pool, user)
                self._in_use[key] -= 1
                if not self._in_use[key]:
                    del self._in_use[key]
            slots.held.clear()

    def take_slot(self, pool: Pool) -> None:
        """Take the request's slot of ``pool`` now (as its first call into it would), so
        that ``too_many_requests`` comes before an answer starts; once per request."""
        slots = _request_slots.get()
        if slots is None or not slots.open or pool in slots.held:
            return  # not a request (background work), or it holds its slot already
        key = (pool, slots.user)
        used = self._in_use.get(key, 0)
        cap = slots.caps[pool]
        if used >= cap:
            raise VfdError(
                ErrorCode.TOO_MANY_REQUESTS,
                f"you have {used} requests in progress that use the {pool.value} workers, "
                f"the most one user may have; retry when one has finished",
                pool=pool.value,
                limit=cap,
                retry_after=slots.retry_after,
            )
        self._in_use[key] = used + 1
        slots.held.add(pool)

    def user_load(self) -> dict[str, dict[str, int]]:
        """Per capped pool, the requests holding slots, by user (for status and tests)."""
        out: dict[str, dict[str, int]] = {pool.value: {} for pool in CAPPED}
        for (pool, user), count in self._in_use.items():
            out[pool.value][str(user)] = count
        return out

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

    async def run_until(
        self,
        pool: Pool,
        deadline: float | None,
        fn: Callable[P, T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """:meth:`run`, but answer ``mountd_unavailable`` after ``deadline`` seconds (``None``:
        wait as long as it takes) — for calls that block on the mount or on mountd.

        The call is not abandoned: its thread keeps its slot of ``pool`` until the syscall
        returns, so the pools stay bounded whatever mountd does; only the request stops
        waiting. A call still queued for a thread at the deadline never runs; one that
        finishes after its request gave up is logged (:meth:`call_until` can also clean up
        what such a call returns).
        """
        call = functools.partial(fn, *args, **kwargs)
        return await self.call_until(pool, deadline, call)

    async def call_until(
        self,
        pool: Pool,
        deadline: float | None,
        call: Callable[[], T],
        *,
        late: Callable[[T], object] | None = None,
    ) -> T:
        """``call()`` in a worker thread of ``pool``, waited for at most ``deadline`` seconds
        (see :meth:`run_until`). When the request stops waiting — the deadline passed, or it
        was cancelled — while the call runs, ``late`` gets what the call returns once it
        does, in the same thread (to close a descriptor an open returned, say)."""
        if deadline is None:
            return await self.run(pool, call)
        guarded = _Guarded(call, late, pool)
        job = asyncio.ensure_future(self.run(pool, guarded))
        try:
            return cast(T, await asyncio.wait_for(asyncio.shield(job), deadline))
        except TimeoutError:
            if not guarded.give_up():
                return cast(T, await job)  # it finished just now
            job.add_done_callback(_retrieve)
            raise _stalled(pool, deadline, started=guarded.started) from None
        except asyncio.CancelledError:
            if guarded.give_up():
                job.add_done_callback(_retrieve)
            elif late is not None:  # it finished meanwhile: what it returned is nobody's
                job.add_done_callback(functools.partial(_late_after, late))
            raise

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


class _Guarded(Generic[T]):
    """A call run by a worker thread that its request may stop waiting for.

    The request (on the event loop) and the thread agree under a lock on who has the result:
    the request, when the call finished before it gave up; otherwise the thread, which hands
    it to ``late`` and logs — or skips the call altogether when it had not begun.
    """

    def __init__(self, call: Callable[[], T], late: Callable[[T], object] | None, pool: Pool):
        self.call = call
        self.late = late
        self.pool = pool
        self.started = False
        self._finished = False
        self._gave_up: float | None = None
        self._lock = threading.Lock()

    def give_up(self) -> bool:
        """Stop waiting; False when the call has finished already (its result is there)."""
        with self._lock:
            if self._finished:
                return False
            self._gave_up = time.monotonic()
            return True

    def __call__(self) -> T | None:
        with self._lock:
            if self._gave_up is not None:
                return None  # nobody waits: never begun
            self.started = True
        try:
            result = self.call()
        except BaseException as exc:
            if self._finish():
                raise
            log.warning(
                "a %s call finished %s after its request gave up: %s",
                self.pool.value,
                self._overdue(),
                exc,
            )
            return None
        if self._finish():
            return result
        log.warning(
            "a %s call finished %s after its request gave up", self.pool.value, self._overdue()
        )
        if self.late is not None:
            try:
                self.late(result)
            except Exception:
                log.exception("cleaning up after a late %s call failed", self.pool.value)
        return None

    def _finish(self) -> bool:
        """Mark the call finished; True when its request still waits for the result."""
        with self._lock:
            self._finished = True
            return self._gave_up is None

    def _overdue(self) -> str:
        assert self._gave_up is not None
        return f"{time.monotonic() - self._gave_up:.1f} s"


def _late_after(late: Callable[[Any], object], job: asyncio.Future[Any]) -> None:
    """Hand what ``job`` returned to ``late``, in a thread (it may block on the mount)."""
    if not job.cancelled() and job.exception() is None:
        job.get_loop().run_in_executor(None, late, job.result())


def _retrieve(job: asyncio.Future[Any]) -> None:
    """Consume the outcome of a job nobody awaits any more (no 'never retrieved' noise)."""
    if not job.cancelled() and job.exception() is not None:
        log.warning("a call nobody waited for failed: %s", job.exception())


def _stalled(pool: Pool, deadline: float, *, started: bool) -> VfdError:
    if not started:
        return VfdError(
            ErrorCode.MOUNTD_UNAVAILABLE,
            f"no {pool.value} worker came free within {deadline:g} s: every one waits on a "
            "call to the mount or mountd that has not returned (mountd stalled?); nothing was "
            "done — `systemctl status vfd-mountd`, and retry",
            pool=pool.value,
            waited=deadline,
            may_complete=False,
        )
    what = "the folder's view" if pool is Pool.FILES else "mountd"
    return VfdError(
        ErrorCode.MOUNTD_UNAVAILABLE,
        f"{what} did not answer within {deadline:g} s (mountd stalled or overloaded); the "
        "operation goes on and may still complete — check its outcome later, and "
        "`systemctl status vfd-mountd`",
        pool=pool.value,
        waited=deadline,
        may_complete=True,
    )


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
