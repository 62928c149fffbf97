"""The cuda accelerator's declared devices (``[plugins.cuda] devices``): checked with an error
naming the entry (a bad section fails the plugin, listed with that error), offered whole or in
shares (the shares arithmetic), MIG instances as units, declared topology levels; and what a
session's container gets for the devices it holds (``vfd_container_spec``: void, the device
request, the MPS limits of shares, the NUMA node's CPUs)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from vfd.plugins import Allotment, ContainerContribution, DeviceRequest, SlotUnit
from vfd.plugins.builtin.cuda import DEVICE, SHARES, Cuda, options_of
from vfd.plugins.manager import Plugins
from vfd.plugins.testing import make_plugins, session_view

GIB = 2**30

A100 = {"uuid": "GPU-0", "name": "A100", "memory": "40GiB", "sm": 108, "numa": 0}
H100 = {"uuid": "GPU-1", "name": "H100", "memory": 80 * GIB, "sm": 132, "numa": 1}


def cuda_started(section: dict[str, Any]) -> Plugins:
    """A started manager holding vfd's built-ins, the cuda section given."""
    manager = make_plugins(builtins=True, sections={"cuda": section})
    asyncio.run(manager.start())
    return manager


@pytest.mark.parametrize(
    ("section", "error"),
    [
        ({"mode": "half"}, "[plugins.cuda] mode 'half' is not 'whole' or 'fractional'"),
        ({"gpus": 2}, "[plugins.cuda] unknown option gpus (known: devices, mode, unit_memory"),
        ({"unit_memory": "lots"}, "[plugins.cuda]: unit_memory 'lots' is no size"),
        ({"unit_sm": -1}, "[plugins.cuda]: unit_sm -1 is not a whole number of at least 0"),
        ({"devices": []}, "[plugins.cuda] devices must be a non-empty list of tables"),
        ({"devices": ["GPU-0"]}, "[plugins.cuda] devices[0]: a table {uuid, name, memory, sm"),
        (
            {"devices": [{"uuid": "GPU-0", "name": "A100"}]},
            "[plugins.cuda] devices[0] (GPU-0): memory, sm missing",
        ),
        (
            {"devices": [{**A100, "memory": "40 gigs"}]},
            "[plugins.cuda] devices[0] (GPU-0): memory '40 gigs' is no size (bytes, or like",
        ),
        (
            {"devices": [{**A100, "sm": 0}]},
            "[plugins.cuda] devices[0] (GPU-0): sm 0 is not a whole number of at least 1",
        ),
        (
            {"devices": [A100, {**H100, "uuid": "GPU-0"}]},
            "[plugins.cuda] devices[1] (GPU-0): uuid GPU-0 is declared twice",
        ),
        (
            {"devices": [{**A100, "colour": "green"}]},
            "[plugins.cuda] devices[0] (GPU-0): unknown key colour (known: memory, mig, name",
        ),
        (
            {"devices": [{**A100, "uuid": "GPU-0,GPU-1"}]},
            "[plugins.cuda] devices[0] (GPU-0,GPU-1): uuid 'GPU-0,GPU-1' is not a device id",
        ),
        (
            {"devices": [{**A100, "near": {"GPU-9": 10}}]},
            "[plugins.cuda] devices[0] (GPU-0): near 'GPU-9' is not another declared GPU",
        ),
        (
            {"devices": [{**A100, "near": {"GPU-1": 15}}, H100]},
            "[plugins.cuda] devices[0] (GPU-0): near GPU-1 = 15: a level of 0, 10, 20, 30, 40, 50",
        ),
        (
            {"devices": [{**A100, "near": {"GPU-1": 10}}, {**H100, "near": {"GPU-0": 20}}]},
            "[plugins.cuda] devices[1] (GPU-1): near GPU-0 = 20 but GPU-0 says otherwise",
        ),
        (
            {"devices": [{**A100, "mig": []}]},
            "[plugins.cuda] devices[0] (GPU-0): mig must be a non-empty list",
        ),
        (
            {"devices": [{**A100, "mig": [{"uuid": "MIG-0", "memory": "50GiB", "sm": 14}]}]},
            "[plugins.cuda] devices[0] (GPU-0) mig[0]: a MIG instance larger than its GPU",
        ),
        (
            {"devices": [{**A100, "mig": [{"uuid": "MIG-0", "memory": "5GiB"}]}]},
            "[plugins.cuda] devices[0] (GPU-0) mig[0]: sm missing",
        ),
    ],
)
def test_cuda_declared_bad_section_fails_the_plugin(section: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError) as caught:
        options_of(section)
    assert str(caught.value).startswith(error), str(caught.value)
    manager = cuda_started(section)
    record = next(r for r in manager.records if r.name == "cuda")
    assert record.error == f"accelerator cuda: ValueError: {caught.value}"
    assert "cuda.device" not in manager.slot_specs()
    assert manager.agent_accelerators() is None
    # its container contribution is gone with it; the other built-ins stay
    assert manager.listing()["schedulers"]


def test_cuda_declared_whole_devices_and_near_levels() -> None:
    section = {"devices": [{**A100, "near": {"GPU-1": 20}}, H100]}
    manager = cuda_started(section)
    inventory = manager.inventories()["cuda"]
    assert inventory.status == "2 declared GPUs ([plugins.cuda] devices)"
    assert [d.declared for d in inventory.devices] == [True, True]
    assert inventory.devices[0].memory == 40 * GIB
    assert inventory.units == (
        SlotUnit(DEVICE, "GPU-0", 1.0, numa=0, near={"GPU-1": 20}),
        SlotUnit(DEVICE, "GPU-1", 1.0, numa=1, near={"GPU-0": 20}),
    )
    assert sorted(manager.slot_specs()) == [DEVICE, SHARES]
    assert manager.slot_specs()[SHARES].quantum == 0.1
    assert manager.device_usage(["GPU-0"]) == {}  # nothing to ask of a declared device


def test_cuda_declared_mig_instances_are_the_units() -> None:
    mig = [
        {"uuid": "MIG-a", "memory": "20GiB", "sm": 42, "name": "A100 MIG 3g.20gb"},
        {"uuid": "MIG-b", "memory": "10GiB", "sm": 28},
    ]
    manager = cuda_started({"devices": [{**A100, "mig": mig, "near": {"GPU-1": 50}}, H100]})
    inventory = manager.inventories()["cuda"]
    assert inventory.status == "2 declared GPUs, 2 MIG instances ([plugins.cuda] devices)"
    gpu, a, b = inventory.devices[:3]
    assert gpu.mig and (a.parent, b.parent) == ("GPU-0", "GPU-0")
    assert (a.name, b.name, b.memory, b.numa) == ("A100 MIG 3g.20gb", "A100 MIG", 10 * GIB, 0)
    assert inventory.units == (
        SlotUnit(DEVICE, "MIG-a", 1.0, numa=0, near={"MIG-b": 0, "GPU-1": 50}),
        SlotUnit(DEVICE, "MIG-b", 1.0, numa=0, near={"MIG-a": 0, "GPU-1": 50}),
        SlotUnit(DEVICE, "GPU-1", 1.0, numa=1, near={"MIG-a": 50, "MIG-b": 50}),
    )


@pytest.mark.parametrize(
    ("units", "shares"),
    [
        ({}, [1.0, 1.0]),  # each device its own share
        ({"unit_memory": "20GiB"}, [2.0, 4.0]),  # memory alone: 40/20, 80/20
        ({"unit_sm": 33}, [3.2, 4.0]),  # SMs alone: 108/33 = 3.27, 132/33
        ({"unit_memory": "30GiB"}, [1.3, 2.6]),
        ({"unit_memory": "20GiB", "unit_sm": 33}, [2.0, 4.0]),  # min(2, 3.27), min(4, 4)
        ({"unit_memory": "30GiB", "unit_sm": 30}, [1.3, 2.6]),  # min(1.33, 3.6), min(2.67, 4.4)
        ({"unit_memory": "500GiB", "unit_sm": 1}, [0.1]),  # the A100 is worth 0.08: not offered
    ],
)
def test_cuda_declared_shares_arithmetic(units: dict[str, Any], shares: list[float]) -> None:
    section = {"mode": "fractional", "devices": [A100, H100], **units}
    inventory = cuda_started(section).inventories()["cuda"]
    assert [(u.slot, u.capacity) for u in inventory.units] == [(SHARES, s) for s in shares]
    assert inventory.status.endswith(f"; {sum(shares):g} cuda.shares")


# ---------------------------------------------------------------------------- the container


def contribution(manager: Plugins, *allocation: Allotment) -> ContainerContribution:
    got = dict(asyncio.run(manager.container_spec(session_view(allocation=allocation))))
    return got["cuda"]


def test_cuda_container_without_devices_is_void() -> None:
    manager = cuda_started({"devices": [A100]})
    assert contribution(manager) == ContainerContribution(env={"NVIDIA_VISIBLE_DEVICES": "void"})
    # an allotment of another accelerator's slot is not cuda's
    other = Allotment("fpga.board", "b0", 1.0)
    assert contribution(manager, other).env == {"NVIDIA_VISIBLE_DEVICES": "void"}


def test_cuda_container_declared_devices_get_env_no_device_request() -> None:
    manager = cuda_started({"devices": [A100, H100]})
    got = contribution(manager, Allotment(DEVICE, "GPU-1", 1.0), Allotment(DEVICE, "GPU-0", 1.0))
    assert got == ContainerContribution(env={"NVIDIA_VISIBLE_DEVICES": "GPU-1,GPU-0"})


def test_cuda_container_shares_mps_limits() -> None:
    section = {"mode": "fractional", "unit_memory": "20GiB", "unit_sm": 27, "devices": [A100, H100]}
    manager = cuda_started(section)
    # 0.5 of the A100's 2 shares: a quarter; 3 of the H100's 4: three quarters
    got = contribution(manager, Allotment(SHARES, "GPU-0", 0.5), Allotment(SHARES, "GPU-1", 3.0))
    assert got.env == {
        "NVIDIA_VISIBLE_DEVICES": "GPU-0,GPU-1",
        "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": "0=10240M,1=61440M",
        "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "25",
    }
    assert got.device_requests == ()
    tiny = contribution(manager, Allotment(SHARES, "GPU-1", 0.01))
    assert tiny.env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "1"


def test_cuda_container_unknown_device_fails_the_session() -> None:
    manager = cuda_started({"devices": [A100]})
    with pytest.raises(Exception) as caught:
        contribution(manager, Allotment(DEVICE, "GPU-7", 1.0))
    assert "plugin cuda failed to contribute to the container" in str(caught.value)
    assert "device GPU-7 of the session's allocation is not one of this node's (GPU-0)" in str(
        caught.value
    )


def numa_machine(root: Path, nodes: dict[int, str]) -> Path:
    for n, cpus in nodes.items():
        path = root / "devices" / "system" / "node" / f"node{n}"
        path.mkdir(parents=True)
        (path / "cpulist").write_text(cpus + "\n")
    return root


def test_cuda_container_discovered_devices_request_and_cpuset(tmp_path: Path) -> None:
    from test_cuda_nvml import TOPOLOGY, fake_nvml, node, sysfs

    root = sysfs(tmp_path, {"0000:1b:00.0": 0, "0000:1c:00.0": 0, "0001:9a:00.0": 1})
    numa_machine(root, {0: "0-15,32-47", 1: "16-31,48-63"})
    cuda = Cuda({}, nvml=fake_nvml(node(), TOPOLOGY), sys_root=root)
    cuda.inventory()
    both = session_view(
        allocation=(Allotment(DEVICE, "GPU-a", 1.0), Allotment(DEVICE, "GPU-b", 1.0))
    )
    assert cuda.contribution(both) == ContainerContribution(
        env={"NVIDIA_VISIBLE_DEVICES": "GPU-a,GPU-b"},
        device_requests=(
            DeviceRequest(
                driver="nvidia",
                device_ids=("GPU-a", "GPU-b"),
                capabilities=(("gpu", "utility", "compute"),),
            ),
        ),
        cpuset_cpus="0-15,32-47",
    )
    mig = cuda.contribution(session_view(allocation=(Allotment(DEVICE, "MIG-c2", 1.0),)))
    assert mig.device_requests[0].device_ids == ("MIG-c2",)
    assert mig.cpuset_cpus == "16-31,48-63"
    # devices on two NUMA nodes: no cpuset
    split = session_view(
        allocation=(Allotment(DEVICE, "GPU-a", 1.0), Allotment(DEVICE, "MIG-c0", 1.0))
    )
    assert cuda.contribution(split).cpuset_cpus is None


def test_cuda_container_one_numa_node_no_cpuset(tmp_path: Path) -> None:
    from test_cuda_nvml import TOPOLOGY, fake_nvml, node, sysfs

    root = sysfs(tmp_path, {"0000:1b:00.0": 0})
    numa_machine(root, {0: "0-63"})
    cuda = Cuda({}, nvml=fake_nvml(node(), TOPOLOGY), sys_root=root)
    cuda.inventory()
    got = cuda.contribution(session_view(allocation=(Allotment(DEVICE, "GPU-a", 1.0),)))
    assert got.cpuset_cpus is None and got.device_requests
