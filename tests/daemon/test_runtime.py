"""The daemon's runtime: one worker pool per kind of blocking work, and the task group that
owns background work (started with the app's lifespan, cancelled when it stops)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import anyio
import httpx
import pytest
from sqlalchemy import create_engine

from vfd.config import RequestLimits, WorkerLimits, load_config
from vfd.daemon import runtime
from vfd.daemon.app import create_app
from vfd.daemon.mountlink import MountdLink
from vfd.daemon.runtime import Pool, Runtime
from vfd.daemon.services.context import Daemon
from vfd.errors import ErrorCode, VfdError


async def _until(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` until it holds; fail after five seconds."""
    for _ in range(500):
        if condition():
            return
        await anyio.sleep(0.01)
    raise AssertionError("condition not met in time")


def test_runtime_full_file_pool_leaves_store_and_identity_free() -> None:
    release = threading.Event()

    async def main() -> None:
        runtime = Runtime(WorkerLimits(files=2))
        async with anyio.create_task_group() as group:
            for _ in range(3):  # one more than the pool: the third waits for a thread
                group.start_soon(runtime.run, Pool.FILES, release.wait, 30.0)
            await _until(lambda: runtime.busy()["files"]["waiting"] >= 1)
            assert runtime.busy()["files"] == {"size": 2, "busy": 2, "waiting": 1}
            with anyio.fail_after(1):
                assert await runtime.run(Pool.STORE, sum, [1, 2]) == 3
                assert await runtime.run(Pool.IDENTITY, str.upper, "me") == "ME"
                assert await runtime.run(Pool.MOUNTD, len, "abc") == 3
            release.set()
        assert runtime.busy()["files"]["busy"] == 0

    try:
        anyio.run(main)
    finally:
        release.set()


def test_runtime_pools_are_sized_from_config(tmp_path: Path) -> None:
    (tmp_path / "vfd.toml").write_text("[workers]\nfiles = 3\nstore = 5\n")
    limits = load_config(state_dir=tmp_path, env={}).workers

    async def main() -> dict[str, dict[str, float]]:
        return Runtime(limits).busy()

    sizes = {pool: figures["size"] for pool, figures in anyio.run(main).items()}
    expected = {"identity": 4, "store": 5, "files": 3, "mountd": 4, "docker": 8, "transfer": 16}
    assert sizes == expected


def test_runtime_spawn_outside_the_task_group_is_refused() -> None:
    async def main() -> None:
        runtime = Runtime(WorkerLimits())
        with pytest.raises(RuntimeError, match="task group is not running"):
            runtime.spawn("late", anyio.sleep_forever)

    anyio.run(main)


def _daemon(tmp_path: Path) -> Daemon:
    config = load_config(state_dir=tmp_path, env={})
    engine = create_engine(f"sqlite:///{tmp_path / 'unused.db'}")
    return Daemon(config=config, engine=engine, mountd=MountdLink(config.mountd_socket))


def test_app_lifespan_runs_background_tasks_and_cancels_them_on_stop(tmp_path: Path) -> None:
    events: list[str] = []

    async def ticker() -> None:
        events.append("started")
        try:
            await anyio.sleep_forever()
        finally:
            events.append("cancelled")

    async def broken() -> None:
        raise OSError("boom")  # logged; ends this task alone

    async def spawned() -> None:
        events.append("spawned")
        await anyio.sleep_forever()

    app = create_app(_daemon(tmp_path), [("broken", broken), ("ticker", ticker)])

    async def main() -> None:
        async with app.router.lifespan_context(app):
            await _until(lambda: "started" in events)
            # requests are served while the background tasks run, through the same pools
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://vfd") as client:
                assert (await client.get("/openapi.json")).status_code == 200
            runtime.current().spawn("spawned", spawned)
            await _until(lambda: "spawned" in events)
            assert "cancelled" not in events
        assert events.count("cancelled") == 1

    anyio.run(main)


def test_runtime_user_caps_refuse_a_users_extra_slow_requests() -> None:
    """A request's first call into the files (or mountd) pool takes a slot of its user's, held
    until the request ends; past the cap the call is refused at once (429), while another
    user, and the same user's store work, go on."""
    release = threading.Event()
    limits = RequestLimits(retry_after=3)

    async def request(rt: Runtime, user: str, pool: Pool, calls: int) -> None:
        with rt.user_slots(user, limits):
            for _ in range(calls):  # one slot per request, however many calls it makes
                await rt.run(pool, release.wait, 30.0)

    async def main() -> None:
        rt = Runtime(WorkerLimits(files=4, mountd=2))
        async with anyio.create_task_group() as group:
            for _ in range(2):  # half the pool: bob's cap
                group.start_soon(request, rt, "bob", Pool.FILES, 2)
            group.start_soon(request, rt, "bob", Pool.MOUNTD, 1)  # cap 1
            await _until(lambda: rt.user_load()["files"].get("bob") == 2)
            await _until(lambda: rt.user_load()["mountd"].get("bob") == 1)
            with anyio.fail_after(1):
                for pool in (Pool.FILES, Pool.MOUNTD):
                    with pytest.raises(VfdError) as info, rt.user_slots("bob", limits):
                        await rt.run(pool, len, "x")
                    assert info.value.code is ErrorCode.TOO_MANY_REQUESTS
                    assert info.value.details["retry_after"] == 3
                    assert info.value.details["pool"] == pool.value
                with rt.user_slots("bob", limits):
                    assert await rt.run(Pool.STORE, len, "abc") == 3  # not capped
                with rt.user_slots("carol", limits):
                    assert await rt.run(Pool.FILES, len, "ab") == 2
                assert await rt.run(Pool.FILES, len, "a") == 1  # no request: background work
            release.set()
        assert rt.user_load() == {"files": {}, "mountd": {}, "transfer": {}}

    try:
        anyio.run(main)
    finally:
        release.set()


def test_runtime_user_caps_follow_the_config(tmp_path: Path) -> None:
    (tmp_path / "vfd.toml").write_text(
        "[workers]\nfiles = 6\n\n[limits]\nuser_mountd = 3\nuser_transfer = 2\n"
    )
    config = load_config(state_dir=tmp_path, env={})
    assert config.limits.user_cap("transfer", config.workers.transfer) == 2
    assert RequestLimits().user_cap("transfer", 16) == 8
    assert config.limits.user_cap("files", config.workers.files) == 3  # half the pool
    assert config.limits.user_cap("mountd", config.workers.mountd) == 3
    assert RequestLimits().user_cap("mountd", 1) == 1  # at least one
