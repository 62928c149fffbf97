"""What every router needs: the daemon, the caller, strict request bodies, and a thread hop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, ParamSpec, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from vfd.daemon import runtime
from vfd.daemon.identity import get_caller
from vfd.daemon.runtime import Pool
from vfd.daemon.services.context import Caller, Daemon

P = ParamSpec("P")
T = TypeVar("T")


def get_daemon(request: Request) -> Daemon:
    daemon: Daemon = request.app.state.daemon
    return daemon


DaemonDep = Annotated[Daemon, Depends(get_daemon)]
CallerDep = Annotated[Caller, Depends(get_caller)]


class Body(BaseModel):
    """A request body: unknown fields and wrong types are refused (400 invalid_argument).

    Strict: ``"12"`` is no integer and ``1`` no boolean. Enum fields are declared with
    :data:`Choice`, which accepts the enum's string values.
    """

    model_config = ConfigDict(extra="forbid", strict=True)


async def run(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Call a blocking service function that works on the store, in a store worker thread."""
    return await runtime.current().run(Pool.STORE, fn, *args, **kwargs)


async def run_files(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Call a blocking function that touches files through the views (it may block on the
    mount), in a file worker thread; ``503 mountd_unavailable`` after ``[workers]
    mountd_wait`` seconds (the call goes on: see :meth:`Runtime.run_until`)."""
    live = runtime.current()
    return await live.run_until(Pool.FILES, live.limits.mountd_wait, fn, *args, **kwargs)


async def run_mountd(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Call a blocking function that waits on mountd's control socket, in a mountd worker
    thread; ``503 mountd_unavailable`` after ``[workers] mountd_wait`` seconds."""
    live = runtime.current()
    return await live.run_until(Pool.MOUNTD, live.limits.mountd_wait, fn, *args, **kwargs)


JSON = dict[str, Any]

E = TypeVar("E")
Choice = Annotated[E, Field(strict=False)]
"""An enum-valued body field, given by its string value."""
