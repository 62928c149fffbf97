"""The cuda accelerator in a real daemon: without a driver it reports no devices and why, and
the daemon serves; with declared devices the node reports them (the agent row, ``GET
/v1/admin/nodes`` with each slot's capacity and what is free of it after the node's sessions'
allocations), and ``vfd plugins`` shows the accelerator with its status; a bad section fails
the plugin, listed with the error, and the daemon serves."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from vfd.daemon.services.session_state import node_name
from vfd.plugins.testing import TestDaemon
from vfd.store.models import Agent, ComputeSession, SessionStatus, User

GIB = 2**30

DECLARED = """
[plugins.cuda]
mode = "fractional"
devices = [
  {uuid = "GPU-d0", name = "A100", memory = "40GiB", sm = 108, numa = 0, near = {GPU-d1 = 10}},
  {uuid = "GPU-d1", name = "A100", memory = "40GiB", sm = 108, numa = 0},
]
"""


@pytest.fixture
def daemon_of(request: pytest.FixtureRequest) -> Iterator[Any]:
    made: list[tuple[TestDaemon, Path]] = []

    def make(config_text: str) -> TestDaemon:
        state = Path(tempfile.mkdtemp(prefix="vfd-cuda-", dir="/tmp"))
        daemon = TestDaemon(state, config_text)
        made.append((daemon, state))
        return daemon

    yield make
    for daemon, state in made:
        daemon.stop()
        shutil.rmtree(state, ignore_errors=True)


def nodes(daemon: TestDaemon) -> list[dict[str, Any]]:
    """``GET /v1/admin/nodes`` once this node has registered."""
    deadline = time.monotonic() + 20
    while True:
        with daemon.http() as http:
            answer = http.get("/v1/admin/nodes")
        answer.raise_for_status()
        found: list[dict[str, Any]] = answer.json()["nodes"]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


@pytest.mark.skipif(Path("/dev/nvidiactl").exists(), reason="this machine has an NVIDIA driver")
def test_cuda_daemon_without_driver_reports_no_devices_and_serves(daemon_of: Any) -> None:
    daemon = daemon_of("")
    (node,) = nodes(daemon)
    cuda = node["accelerators"]["cuda"]
    assert cuda["status"].startswith("no devices: "), cuda
    assert "NVML" in cuda["status"] or "nvidia-ml-py" in cuda["status"]
    assert (cuda["devices"], cuda["slots"]) == ([], {})
    listed = daemon.cli("plugins")
    assert listed.returncode == 0, listed.stderr
    line = next(
        x for x in listed.stdout.splitlines() if x.startswith("cuda ") and "no devices" in x
    )
    assert "cuda.device, cuda.shares" in line, listed.stdout
    with daemon.http() as http:
        assert http.get("/v1/status").status_code == 200


def test_cuda_daemon_declared_devices_reported_with_free_slots(daemon_of: Any) -> None:
    daemon = daemon_of(DECLARED)
    (node,) = nodes(daemon)
    cuda = node["accelerators"]["cuda"]
    assert cuda["status"] == "2 declared GPUs ([plugins.cuda] devices); 2 cuda.shares"
    assert [d["id"] for d in cuda["devices"]] == ["GPU-d0", "GPU-d1"]
    assert cuda["devices"][0]["declared"] is True
    assert cuda["slots"] == {"cuda.shares": {"capacity": 2.0, "free": 2.0}}
    with Session(daemon.engine) as session:
        row = session.get(Agent, node_name(daemon.config))
        assert row is not None and row.accelerators is not None
        units = row.accelerators["cuda"]["units"]
        assert units[0] == {
            "slot": "cuda.shares",
            "device": "GPU-d0",
            "capacity": 1.0,
            "numa": 0,
            "near": {"GPU-d1": 10},
        }
    # sessions holding resources hold their allocations; an ended one holds nothing
    user = daemon.user()
    with Session(daemon.engine) as session:
        owner = session.exec(select(User).where(User.email == user["email"])).one()
        for n, (status, amount) in enumerate(
            [(SessionStatus.RUNNING, 0.3), (SessionStatus.SCHEDULED, 0.5), ("terminated", 1.0)]
        ):
            session.add(
                ComputeSession(
                    name=f"g{n}",
                    user_id=owner.id,
                    uid=owner.uid,
                    gid=owner.gid,
                    node=node_name(daemon.config),
                    image="img",
                    status=SessionStatus(status),
                    slots={"cuda.shares": amount},
                    allocation=[{"slot": "cuda.shares", "device": "GPU-d0", "amount": amount}],
                )
            )
        session.commit()
    (node,) = nodes(daemon)
    assert node["accelerators"]["cuda"]["slots"] == {"cuda.shares": {"capacity": 2.0, "free": 1.2}}
    listed = daemon.cli("plugins", "--json")
    assert listed.returncode == 0, listed.stderr
    (accelerator,) = json.loads(listed.stdout)["accelerators"]
    assert accelerator["status"] == cuda["status"] and accelerator["devices"] == 2
    table = daemon.cli("plugins").stdout
    assert "2 declared GPUs" in table and "ACCELERATOR" in table
    # vfd status (an admin's) shows this node's accelerators, devices and free slots
    shown = daemon.cli("status")
    assert shown.returncode == 0, shown.stderr
    flat = " ".join(shown.stdout.split())  # the table wraps to the terminal's width
    assert (
        "cuda 2 declared GPUs ([plugins.cuda] devices); 2 cuda.shares; "
        "cuda.shares 1.2 free of 2 GPU-d0 A100, 40 GiB, 108 SMs, NUMA 0 "
        "GPU-d1 A100, 40 GiB, 108 SMs, NUMA 0" in flat
    ), shown.stdout
    status = json.loads(daemon.cli("status", "--json").stdout)
    assert status["accelerators"]["cuda"]["slots"] == {
        "cuda.shares": {"capacity": 2.0, "free": 1.2}
    }


def test_cuda_daemon_bad_section_fails_the_plugin_and_serves(daemon_of: Any) -> None:
    daemon = daemon_of('[plugins.cuda]\nmode = "halves"\n')
    listed = daemon.cli("plugins", "--json")
    assert listed.returncode == 0, listed.stderr
    answer = json.loads(listed.stdout)
    cuda = next(p for p in answer["plugins"] if p["name"] == "cuda")
    assert cuda["error"] == (
        "accelerator cuda: ValueError: [plugins.cuda] mode 'halves' is not 'whole' or 'fractional'"
    )
    assert answer["accelerators"] == []
    text = daemon.cli("plugins").stdout
    assert "cuda: left out: accelerator cuda: ValueError: [plugins.cuda] mode 'halves'" in text
    (node,) = nodes(daemon)
    assert node["accelerators"] is None
