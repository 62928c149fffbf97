"""``GET /v1/status`` and ``GET /v1/whoami``."""

from __future__ import annotations

from fastapi import APIRouter

import vfd
from vfd.daemon import containers, runtime
from vfd.daemon.routes.deps import JSON, CallerDep, DaemonDep, run, run_mountd
from vfd.daemon.services import agents, users
from vfd.daemon.services.session_state import node_name
from vfd.errors import ErrorCode, VfdError

router = APIRouter()


@router.get("/v1/status")
async def status(daemon: DaemonDep, caller: CallerDep) -> JSON:
    """The daemon's version, whether mountd answers, and the caller's identity; for admins
    also the node-wide figures: store, hosts, mountd's health (null when it does not answer;
    ``fast_path`` in it says whether mountd's low-level fast path is on, and if not, why),
    the worker pools, and whether sessions may run on this node (``sessions``: ``on``, the
    ``reason`` they are off and how to turn them on, ``[sessions] enabled``, the ``node``), and
    this node's accelerators (``accelerators``: by accelerator, its status line, devices and
    each slot's capacity and free part; null when no accelerator plugin is loaded)."""
    try:
        mountd = await run_mountd(daemon.mountd.health)
    except VfdError as exc:  # stalled past [workers] mountd_wait
        if exc.code is not ErrorCode.MOUNTD_UNAVAILABLE:
            raise
        mountd = None
    answer: JSON = {
        "version": vfd.__version__,
        "mountd_up": mountd is not None,
        "identity": await run(users.whoami, daemon, caller),
    }
    if caller.is_admin:
        off = await containers.available(daemon)
        answer.update(
            database=daemon.engine.dialect.name,
            hosts=sorted(daemon.config.hosts),
            mountd=mountd,
            workers=runtime.current().busy(),
            sessions={
                "on": off is None,
                "reason": off,
                "enabled": daemon.config.sessions.enabled,
                "node": node_name(daemon.config),
            },
            accelerators=await run(agents.node_accelerators, daemon),
        )
    return answer


@router.get("/v1/whoami")
async def whoami(daemon: DaemonDep, caller: CallerDep) -> JSON:
    return await run(users.whoami, daemon, caller)
