"""``vfd vfolder delete`` and ``purge`` when mountd stalls: the daemon answers
``503 mountd_unavailable`` after ``[workers] mountd_wait`` saying that the change may still
complete; the CLI says so, follows the folder, and prints how it ended — instead of
reporting a failure for a change that then happens on the server."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "daemon"))
from fakemountd import FakeMountd

SETTINGS = {"workers": {"mountd_wait": 1}}


@pytest.fixture
def stalling(
    vfd_daemon_factory: Callable[..., AbstractContextManager[Any]],
) -> Iterator[tuple[Any, FakeMountd]]:
    """A daemon with a one-second ``mountd_wait`` and a fake mountd that can hang ops."""
    with (
        vfd_daemon_factory(settings=SETTINGS) as daemon,
        FakeMountd(daemon.config.mountd_socket) as fake,
    ):
        yield daemon, fake


def _vfd(vfd_bin: Path, daemon: Any, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VFD_")}
    env.update(daemon.env, COLUMNS="250")
    return subprocess.Popen(
        [str(vfd_bin), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _folder(daemon: Any) -> str:
    name = f"out-{secrets.token_hex(3)}"
    assert daemon.http.post("/v1/vfolders", json={"name": name}).status_code == 201
    return name


def test_purge_that_mountd_finishes_late_is_reported_purged_after_all(
    stalling: tuple[Any, FakeMountd], vfd_bin: Path
) -> None:
    daemon, fake = stalling
    name = _folder(daemon)
    assert daemon.http.delete(f"/v1/vfolders/{name}").status_code == 200
    fake.hang = {"purge"}
    proc = _vfd(vfd_bin, daemon, "vfolder", "purge", name, "--confirm", name)
    try:
        assert proc.stderr is not None
        note = proc.stderr.readline()  # after the daemon's 503, before following the folder
        assert note.startswith("note: "), note
        assert "may still complete" in note and f"following folder {name}" in note
        fake.wait_hung()
        fake.release(answer=True)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, (out, err)
    assert f"Purged folder {name} after all" in out
    assert daemon.http.get(f"/v1/vfolders/{name}").status_code == 404


def test_purge_that_fails_late_says_so(stalling: tuple[Any, FakeMountd], vfd_bin: Path) -> None:
    daemon, fake = stalling
    name = _folder(daemon)
    assert daemon.http.delete(f"/v1/vfolders/{name}").status_code == 200
    fake.hang = {"purge"}
    proc = _vfd(vfd_bin, daemon, "vfolder", "purge", name, "--confirm", name)
    try:
        assert proc.stderr is not None
        assert "may still complete" in proc.stderr.readline()
        fake.wait_hung()
        fake.release()  # the connection drops unanswered: the purge fails
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 1, (out, err)
    assert "did not complete after all: it is delete-error" in err
    assert err.rstrip().endswith("[mountd_unavailable]"), err
    assert daemon.http.get(f"/v1/vfolders/{name}").json()["status"] == "delete-error"


def test_delete_whose_detach_hangs_is_reported_trashed_after_all(
    stalling: tuple[Any, FakeMountd], vfd_bin: Path
) -> None:
    daemon, fake = stalling
    name = _folder(daemon)
    fake.hang = {"detach"}
    proc = _vfd(vfd_bin, daemon, "vfolder", "delete", name)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        fake.release(answer=True)
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, (out, err)
    assert "may still complete" in err
    assert f"Moved folder {name} to the trash after all" in out
    assert daemon.http.get(f"/v1/vfolders/{name}").json()["status"] == "delete-pending"
