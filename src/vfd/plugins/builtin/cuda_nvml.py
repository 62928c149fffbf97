"""Finding a node's NVIDIA GPUs through NVML (``nvidia-ml-py``'s ``pynvml``), for the
``cuda`` accelerator.

:func:`discover` takes the NVML module as an argument — ``pynvml`` on a node, a fake module
object in tests — and never raises: no library, no driver, no permission, no GPU is a
:class:`Found` with no devices and a status line saying why. A GPU is listed by its UUID with
its name, memory, streaming multiprocessors (``multiprocessorCount`` of
``nvmlDeviceGetAttributes``; where that does not answer, the CUDA cores over the cores per SM
of its compute capability; else 0, unknown), PCI bus id and NUMA node (from sysfs); a GPU in
MIG mode lists its MIG instances too, each a device of its own whose ``parent`` is the GPU.
The topology between GPUs is NVML's common-ancestor level (0 one board, 10 one PCIe switch,
20 several switches, 30 one host bridge, 40 one NUMA node, 50 across NUMA nodes).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vfd.plugins.types import DeviceInfo

log = logging.getLogger(__name__)

SYS = Path("/sys")
MIG_ENABLE = 1
"""``NVML_DEVICE_MIG_ENABLE``: the current MIG mode of a GPU whose instances are offered."""

CORES_PER_SM = {
    (6, 0): 64,
    (6, 1): 128,
    (6, 2): 128,
    (7, 0): 64,
    (7, 2): 64,
    (7, 5): 64,
    (8, 0): 64,
}
"""CUDA cores per streaming multiprocessor by compute capability, for GPUs whose NVML does
not answer ``nvmlDeviceGetAttributes``; every other capability from 8.6 on has 128."""


@dataclass(frozen=True)
class Found:
    """What discovery found: the devices (GPUs and MIG instances), the topology level
    between GPUs (by GPU id, both ways), and one line for people."""

    devices: tuple[DeviceInfo, ...] = ()
    near: dict[str, dict[str, int]] = field(default_factory=dict)
    status: str = ""


def load_nvml() -> tuple[Any | None, str | None]:
    """The ``pynvml`` module, or None and why it cannot be imported."""
    try:
        return importlib.import_module("pynvml"), None
    except ImportError as exc:
        return None, f"nvidia-ml-py (pynvml) is not installed ({exc})"


def why(nvml: Any, exc: BaseException) -> str:
    """An NVML error in words (the common reasons a node has no usable GPU spelt out)."""
    known = {
        "NVMLError_LibraryNotFound": "the NVIDIA driver's library (libnvidia-ml.so.1) is "
        "not installed",
        "NVMLError_DriverNotLoaded": "the NVIDIA driver is not loaded",
        "NVMLError_NoPermission": "no permission to use the NVIDIA devices",
        "NVMLError_InsufficientPower": "a GPU is short of power",
    }
    for name, text in known.items():
        kind = getattr(nvml, name, None)
        if isinstance(kind, type) and isinstance(exc, kind):
            return text
    return str(exc) or type(exc).__name__


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def sysfs_bus_id(bus_id: str) -> str:
    """NVML's PCI bus id (``00000000:3B:00.0``) as sysfs names the device
    (``0000:3b:00.0``: a 4-digit domain, lowercase)."""
    domain, _, rest = bus_id.strip().lower().partition(":")
    return f"{domain[-4:]:0>4}:{rest}"


def numa_of(bus_id: str | None, sys_root: Path = SYS) -> int | None:
    """The NUMA node of the PCI device ``bus_id`` (sysfs ``numa_node``; -1 or unreadable =
    None)."""
    if not bus_id:
        return None
    path = sys_root / "bus" / "pci" / "devices" / sysfs_bus_id(bus_id) / "numa_node"
    try:
        node = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return node if node >= 0 else None


def _sm(nvml: Any, handle: Any) -> int:
    """Streaming multiprocessors of a GPU or MIG instance (0 = unknown)."""
    try:
        return int(nvml.nvmlDeviceGetAttributes(handle).multiprocessorCount)
    except Exception:
        pass
    try:
        cores = int(nvml.nvmlDeviceGetNumGpuCores(handle))
        major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
        per_sm = CORES_PER_SM.get((int(major), int(minor)), 128 if major >= 8 else 64)
        return cores // per_sm
    except Exception:
        return 0


def _mig_on(nvml: Any, handle: Any) -> bool:
    try:
        current, _pending = nvml.nvmlDeviceGetMigMode(handle)
    except Exception:  # not MIG-capable
        return False
    return int(current) == MIG_ENABLE


def _instances(nvml: Any, handle: Any, gpu: DeviceInfo) -> list[DeviceInfo]:
    """The MIG instances of a GPU in MIG mode (an empty index is skipped)."""
    out = []
    for index in range(int(nvml.nvmlDeviceGetMaxMigDeviceCount(handle))):
        try:
            mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, index)
        except Exception:  # NVMLError_NotFound: no instance at this index
            continue
        try:
            name = _text(nvml.nvmlDeviceGetName(mig))
        except Exception:
            name = f"{gpu.name} MIG"
        out.append(
            DeviceInfo(
                id=_text(nvml.nvmlDeviceGetUUID(mig)),
                name=name,
                memory=int(nvml.nvmlDeviceGetMemoryInfo(mig).total),
                sm=_sm(nvml, mig),
                pci_bus_id=gpu.pci_bus_id,
                numa=gpu.numa,
                parent=gpu.id,
            )
        )
    return out


def _gpu(nvml: Any, handle: Any, sys_root: Path) -> DeviceInfo:
    bus_id = _text(nvml.nvmlDeviceGetPciInfo(handle).busId)
    return DeviceInfo(
        id=_text(nvml.nvmlDeviceGetUUID(handle)),
        name=_text(nvml.nvmlDeviceGetName(handle)),
        memory=int(nvml.nvmlDeviceGetMemoryInfo(handle).total),
        sm=_sm(nvml, handle),
        pci_bus_id=bus_id,
        numa=numa_of(bus_id, sys_root),
        mig=_mig_on(nvml, handle),
    )


def discover(nvml: Any, sys_root: Path = SYS) -> Found:
    """Every GPU and MIG instance NVML shows, and the topology between the GPUs. Never
    raises; NVML is left initialised when it found devices (for ``usage``)."""
    if nvml is None:
        return Found(status="no devices: nvidia-ml-py (pynvml) is not installed")
    try:
        nvml.nvmlInit()
    except Exception as exc:
        return Found(status=f"no devices: NVML: {why(nvml, exc)}")
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
    except Exception:
        driver = "unknown"
    devices: list[DeviceInfo] = []
    handles: dict[str, Any] = {}
    problems: list[str] = []
    try:
        count = int(nvml.nvmlDeviceGetCount())
    except Exception as exc:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()
        return Found(status=f"no devices: NVML: {why(nvml, exc)}")
    for index in range(count):
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            gpu = _gpu(nvml, handle, sys_root)
            instances = _instances(nvml, handle, gpu) if gpu.mig else []
        except Exception as exc:
            problems.append(f"GPU {index} left out: {why(nvml, exc)}")
            log.warning("cuda: GPU %d left out: %s", index, why(nvml, exc))
            continue
        handles[gpu.id] = handle
        devices.append(gpu)
        devices.extend(instances)
        if gpu.mig and not instances:
            problems.append(f"{gpu.id} is in MIG mode with no instance")
    near: dict[str, dict[str, int]] = {gpu: {} for gpu in handles}
    ids = list(handles)
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            try:
                level = int(nvml.nvmlDeviceGetTopologyCommonAncestor(handles[a], handles[b]))
            except Exception:
                continue
            near[a][b] = near[b][a] = level
    gpus = len(handles)
    migs = sum(1 for d in devices if d.parent is not None)
    if gpus == 0:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()
        status = f"no devices: NVML found no GPU (driver {driver})"
    else:
        status = f"{gpus} GPU{'s' if gpus != 1 else ''}"
        if migs:
            status += f", {migs} MIG instance{'s' if migs != 1 else ''}"
        status += f" (driver {driver})"
    if problems:
        status += "; " + "; ".join(problems)
    return Found(devices=tuple(devices), near=near, status=status)


def usage(nvml: Any, devices: list[str]) -> dict[str, dict[str, Any]]:
    """Utilisation (%; GPUs only, NVML has none for a MIG instance) and memory used (bytes)
    of each device NVML answers for, by id."""
    out: dict[str, dict[str, Any]] = {}
    for device in devices:
        try:
            handle = nvml.nvmlDeviceGetHandleByUUID(device)
            figures: dict[str, Any] = {
                "memory_used": int(nvml.nvmlDeviceGetMemoryInfo(handle).used)
            }
        except Exception:
            continue
        with contextlib.suppress(Exception):
            figures["utilization"] = int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        out[device] = figures
    return out
