"""The cuda accelerator's discovery through NVML, against a fake NVML module handed to
``cuda_nvml.discover`` (and to ``Cuda``) the way ``pynvml`` is on a node: GPUs by UUID with
memory, SMs (and the fallback when ``nvmlDeviceGetAttributes`` does not answer), PCI bus id,
NUMA node from sysfs, MIG instances as devices of their own, topology levels; no driver is no
devices and why; usage of the devices."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from vfd.plugins import DeviceInfo, SlotUnit
from vfd.plugins.builtin import cuda_nvml
from vfd.plugins.builtin.cuda import DEVICE, SHARES, Cuda

GIB = 2**30


class NVMLError(Exception):
    pass


class NVMLError_DriverNotLoaded(NVMLError):
    pass


class NVMLError_NotFound(NVMLError):
    pass


class NVMLError_NotSupported(NVMLError):
    pass


def fake_nvml(
    gpus: list[dict[str, Any]],
    topology: dict[frozenset[str], int] | None = None,
    init_error: Exception | None = None,
) -> Any:
    """A module object with the pynvml calls discovery makes, over ``gpus`` (dicts: uuid,
    name, memory, sm or cores+cc, bus, mig: list of instance dicts or None, used, util)."""
    by_uuid: dict[str, dict[str, Any]] = {}
    for gpu in gpus:
        by_uuid[gpu["uuid"]] = gpu
        for inst in gpu.get("mig") or ():
            if inst is not None:
                by_uuid[inst["uuid"]] = inst
    calls: list[str] = []

    def init() -> None:
        calls.append("init")
        if init_error is not None:
            raise init_error

    def attributes(h: dict[str, Any]) -> Any:
        if "sm" not in h:
            raise NVMLError_NotSupported("Not Supported")
        return SimpleNamespace(multiprocessorCount=h["sm"])

    def mig_mode(h: dict[str, Any]) -> tuple[int, int]:
        if "mig" not in h:
            raise NVMLError_NotSupported("Not Supported")
        return (1, 1) if h["mig"] is not None else (0, 0)

    def mig_handle(h: dict[str, Any], index: int) -> dict[str, Any]:
        slots = h["mig"]
        if index >= len(slots) or slots[index] is None:
            raise NVMLError_NotFound("Not Found")
        inst: dict[str, Any] = slots[index]
        return inst

    def utilization(h: dict[str, Any]) -> Any:
        if "util" not in h:
            raise NVMLError_NotSupported("Not Supported")
        return SimpleNamespace(gpu=h["util"])

    return SimpleNamespace(
        calls=calls,
        NVMLError=NVMLError,
        NVMLError_DriverNotLoaded=NVMLError_DriverNotLoaded,
        NVMLError_NotFound=NVMLError_NotFound,
        nvmlInit=init,
        nvmlShutdown=lambda: calls.append("shutdown"),
        nvmlSystemGetDriverVersion=lambda: "550.54.15",
        nvmlDeviceGetCount=lambda: len(gpus),
        nvmlDeviceGetHandleByIndex=lambda i: gpus[i],
        nvmlDeviceGetHandleByUUID=lambda u: by_uuid[u],
        nvmlDeviceGetUUID=lambda h: h["uuid"],
        nvmlDeviceGetName=lambda h: h.get("name", "NVIDIA H100 80GB HBM3 MIG 3g.40gb"),
        nvmlDeviceGetMemoryInfo=lambda h: SimpleNamespace(total=h["memory"], used=h.get("used", 0)),
        nvmlDeviceGetAttributes=attributes,
        nvmlDeviceGetNumGpuCores=lambda h: h["cores"],
        nvmlDeviceGetCudaComputeCapability=lambda h: h["cc"],
        nvmlDeviceGetPciInfo=lambda h: SimpleNamespace(busId=h["bus"].encode()),
        nvmlDeviceGetMigMode=mig_mode,
        nvmlDeviceGetMaxMigDeviceCount=lambda h: 7,
        nvmlDeviceGetMigDeviceHandleByIndex=mig_handle,
        nvmlDeviceGetTopologyCommonAncestor=lambda a, b: (topology or {})[
            frozenset((a["uuid"], b["uuid"]))
        ],
        nvmlDeviceGetUtilizationRates=utilization,
    )


def sysfs(root: Path, numa: dict[str, int]) -> Path:
    """A fake /sys with the ``numa_node`` of each PCI device (sysfs bus id)."""
    for bus, node in numa.items():
        path = root / "bus" / "pci" / "devices" / bus
        path.mkdir(parents=True)
        (path / "numa_node").write_text(f"{node}\n")
    return root


def node() -> list[dict[str, Any]]:
    """Two H100s on NUMA node 0 behind one switch, a third in MIG mode on node 1 with two
    instances (index 1 empty), its SMs only known from its cores."""
    return [
        {
            "uuid": "GPU-a",
            "name": "NVIDIA H100 80GB HBM3",
            "memory": 80 * GIB,
            "sm": 132,
            "bus": "00000000:1B:00.0",
            "mig": None,
            "used": 3 * GIB,
            "util": 42,
        },
        {
            "uuid": "GPU-b",
            "name": "NVIDIA H100 80GB HBM3",
            "memory": 80 * GIB,
            "cores": 16896,
            "cc": (9, 0),
            "bus": "00000000:1C:00.0",
        },
        {
            "uuid": "GPU-c",
            "name": "NVIDIA H100 80GB HBM3",
            "memory": 80 * GIB,
            "sm": 132,
            "bus": "00000001:9A:00.0",
            "mig": [
                {"uuid": "MIG-c0", "memory": 40 * GIB, "sm": 60, "used": GIB},
                None,
                {"uuid": "MIG-c2", "memory": 20 * GIB, "sm": 32},
            ],
        },
    ]


TOPOLOGY = {
    frozenset(("GPU-a", "GPU-b")): 10,
    frozenset(("GPU-a", "GPU-c")): 50,
    frozenset(("GPU-b", "GPU-c")): 50,
}


def test_cuda_nvml_finds_gpus_mig_instances_numa_and_topology(tmp_path: Path) -> None:
    root = sysfs(tmp_path, {"0000:1b:00.0": 0, "0000:1c:00.0": 0, "0001:9a:00.0": 1})
    found = cuda_nvml.discover(fake_nvml(node(), TOPOLOGY), root)
    assert found.status == "3 GPUs, 2 MIG instances (driver 550.54.15)"
    assert found.devices == (
        DeviceInfo("GPU-a", "NVIDIA H100 80GB HBM3", 80 * GIB, 132, "00000000:1B:00.0", 0),
        DeviceInfo("GPU-b", "NVIDIA H100 80GB HBM3", 80 * GIB, 132, "00000000:1C:00.0", 0),
        DeviceInfo(
            "GPU-c", "NVIDIA H100 80GB HBM3", 80 * GIB, 132, "00000001:9A:00.0", 1, mig=True
        ),
        DeviceInfo(
            "MIG-c0",
            "NVIDIA H100 80GB HBM3 MIG 3g.40gb",
            40 * GIB,
            60,
            "00000001:9A:00.0",
            1,
            parent="GPU-c",
        ),
        DeviceInfo(
            "MIG-c2",
            "NVIDIA H100 80GB HBM3 MIG 3g.40gb",
            20 * GIB,
            32,
            "00000001:9A:00.0",
            1,
            parent="GPU-c",
        ),
    )
    assert found.near == {
        "GPU-a": {"GPU-b": 10, "GPU-c": 50},
        "GPU-b": {"GPU-a": 10, "GPU-c": 50},
        "GPU-c": {"GPU-a": 50, "GPU-b": 50},
    }


def test_cuda_nvml_units_whole_mig_instances_each_one(tmp_path: Path) -> None:
    root = sysfs(tmp_path, {"0000:1b:00.0": 0, "0000:1c:00.0": 0, "0001:9a:00.0": -1})
    nvml = fake_nvml(node(), TOPOLOGY)
    inventory = Cuda({}, nvml=nvml, sys_root=root).inventory()
    assert inventory.status == "3 GPUs, 2 MIG instances (driver 550.54.15)"
    assert inventory.units == (
        SlotUnit(DEVICE, "GPU-a", 1.0, numa=0, near={"GPU-b": 10, "MIG-c0": 50, "MIG-c2": 50}),
        SlotUnit(DEVICE, "GPU-b", 1.0, numa=0, near={"GPU-a": 10, "MIG-c0": 50, "MIG-c2": 50}),
        SlotUnit(DEVICE, "MIG-c0", 1.0, numa=None, near={"GPU-a": 50, "GPU-b": 50, "MIG-c2": 0}),
        SlotUnit(DEVICE, "MIG-c2", 1.0, numa=None, near={"GPU-a": 50, "GPU-b": 50, "MIG-c0": 0}),
    )
    assert "shutdown" not in nvml.calls  # kept for usage


def test_cuda_nvml_units_fractional_by_memory_and_sm(tmp_path: Path) -> None:
    nvml = fake_nvml(node(), TOPOLOGY)
    section = {"mode": "fractional", "unit_memory": "20GiB", "unit_sm": 33}
    inventory = Cuda(section, nvml=nvml, sys_root=tmp_path).inventory()
    assert [(u.slot, u.device, u.capacity) for u in inventory.units] == [
        (SHARES, "GPU-a", 4.0),  # min(80/20, 132/33)
        (SHARES, "GPU-b", 4.0),
        (SHARES, "MIG-c0", 1.8),  # min(40/20, 60/33 = 1.81) floored to 0.1
        (SHARES, "MIG-c2", 0.9),  # min(20/20, 32/33 = 0.97)
    ]
    assert inventory.status.endswith("; 10.7 cuda.shares")


def test_cuda_nvml_no_driver_is_no_devices_and_why(tmp_path: Path) -> None:
    nvml = fake_nvml(node(), init_error=NVMLError_DriverNotLoaded("Driver Not Loaded"))
    inventory = Cuda({}, nvml=nvml, sys_root=tmp_path).inventory()
    assert inventory.status == "no devices: NVML: the NVIDIA driver is not loaded"
    assert (inventory.devices, inventory.units) == ((), ())
    other = fake_nvml(node(), init_error=NVMLError("Unknown Error"))
    assert cuda_nvml.discover(other).status == "no devices: NVML: Unknown Error"


def test_cuda_nvml_no_gpu_and_broken_gpu_are_said(tmp_path: Path) -> None:
    nvml = fake_nvml([])
    assert cuda_nvml.discover(nvml, tmp_path).status == (
        "no devices: NVML found no GPU (driver 550.54.15)"
    )
    assert nvml.calls == ["init", "shutdown"]
    gpus = node()
    del gpus[1]["bus"]  # its PCI info fails
    found = cuda_nvml.discover(fake_nvml(gpus, TOPOLOGY), tmp_path)
    assert [d.id for d in found.devices] == ["GPU-a", "GPU-c", "MIG-c0", "MIG-c2"]
    assert found.status == "2 GPUs, 2 MIG instances (driver 550.54.15); GPU 1 left out: 'bus'"
    gpus = node()
    gpus[2]["mig"] = [None]
    found = cuda_nvml.discover(fake_nvml(gpus, TOPOLOGY), tmp_path)
    assert found.status.endswith("; GPU-c is in MIG mode with no instance")


def test_cuda_nvml_usage_of_devices(tmp_path: Path) -> None:
    accelerator = Cuda({}, nvml=fake_nvml(node(), TOPOLOGY), sys_root=tmp_path)
    accelerator.inventory()
    assert accelerator.usage(["GPU-a", "MIG-c0", "GPU-zz"]) == {
        "GPU-a": {"memory_used": 3 * GIB, "utilization": 42},
        "MIG-c0": {"memory_used": GIB},  # NVML has no utilisation of a MIG instance
    }


@pytest.mark.parametrize(
    ("bus", "sysfs_name"),
    [("00000000:3B:00.0", "0000:3b:00.0"), ("0000:af:00.0", "0000:af:00.0")],
)
def test_cuda_nvml_sysfs_bus_id(bus: str, sysfs_name: str) -> None:
    assert cuda_nvml.sysfs_bus_id(bus) == sysfs_name
