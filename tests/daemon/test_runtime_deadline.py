"""``Runtime.run_until``/``call_until``: a request stops waiting for a stalled call after its
deadline (``503 mountd_unavailable``) while the call keeps its worker thread — and its slot of
the pool — until it returns."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from vfd.config import WorkerLimits, load_config
from vfd.daemon.runtime import Pool, Runtime
from vfd.errors import ErrorCode, VfdError


async def _until(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` until it holds; fail after ten seconds."""
    for _ in range(1000):
        if condition():
            return
        await anyio.sleep(0.01)
    raise AssertionError("condition not met in time")


def test_run_until_answers_503_and_the_stalled_call_keeps_its_slot() -> None:
    release = threading.Event()
    late: list[str] = []

    def stalled() -> str:
        release.wait(30.0)
        return "done"

    async def main() -> None:
        runtime = Runtime(WorkerLimits(files=1))
        started = time.monotonic()
        with pytest.raises(VfdError) as caught:
            await runtime.call_until(Pool.FILES, 0.2, stalled, late=late.append)
        assert time.monotonic() - started < 5.0
        err = caught.value
        assert err.code is ErrorCode.MOUNTD_UNAVAILABLE
        assert err.details["may_complete"] is True
        assert "may still complete" in err.message
        # the pool stays bounded: the thread holds the only slot until the call returns
        assert runtime.busy()["files"]["busy"] == 1
        # a second call waits for that slot, and is told that nothing was done
        ran: list[bool] = []
        with pytest.raises(VfdError) as queued:
            await runtime.run_until(Pool.FILES, 0.2, ran.append, True)
        assert queued.value.details["may_complete"] is False
        assert "nothing was done" in queued.value.message
        release.set()
        await _until(lambda: runtime.busy()["files"]["busy"] == 0 and late == ["done"])
        # the call given up while queued never runs; the pool serves again
        assert await runtime.run_until(Pool.FILES, 5.0, sum, [1, 2]) == 3
        assert ran == []

    try:
        anyio.run(main)
    finally:
        release.set()


def test_run_until_returns_what_a_call_in_time_returns_or_raises() -> None:
    async def main() -> None:
        runtime = Runtime(WorkerLimits())
        assert await runtime.run_until(Pool.MOUNTD, 5.0, str.upper, "ok") == "OK"
        assert await runtime.run_until(Pool.MOUNTD, None, str.upper, "ok") == "OK"
        with pytest.raises(ZeroDivisionError):
            await runtime.run_until(Pool.FILES, 5.0, divmod, 1, 0)
        assert runtime.busy()["files"]["busy"] == 0

    anyio.run(main)


def test_mountd_wait_is_read_from_workers(tmp_path: Path) -> None:
    assert load_config(state_dir=tmp_path, env={}).workers.mountd_wait == 30.0
    (tmp_path / "vfd.toml").write_text("[workers]\nmountd_wait = 0.5\n")
    assert load_config(state_dir=tmp_path, env={}).workers.mountd_wait == 0.5
    (tmp_path / "vfd.toml").write_text("[workers]\nmountd_wait = 0\n")
    with pytest.raises(VfdError, match=r"workers\.mountd_wait: must be a positive number"):
        load_config(state_dir=tmp_path, env={})
