"""The ``cuda`` accelerator: NVIDIA GPUs (and MIG instances) as slots sessions ask for,
registered through ``vfd_register_accelerators`` like any accelerator plugin's.

A node offers its devices either whole (``cuda.device``, ``[plugins.cuda] mode = "whole"``,
the default) or in shares (``cuda.shares``, ``mode = "fractional"``): a device is worth
``floor10(min(memory / unit_memory, sm / unit_sm))`` shares (to 0.1; a unit left at 0 does
not count, and with both at 0, the default, each device is worth 1.0). A GPU in MIG mode is
not offered itself: each of its MIG instances is one unit.

The devices are found with NVML (:mod:`vfd.plugins.builtin.cuda_nvml`), or declared in the
config (``devices = [...]``, which replaces discovery: a node whose GPUs NVML cannot see from
where the daemon runs, or a test node). ``vfd_container_spec`` gives a session's container
the devices it holds (docs/accelerators.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vfd.cli.sizes import parse_size
from vfd.errors import VfdError
from vfd.plugins.builtin import cuda_nvml
from vfd.plugins.builtin.cuda_nvml import SYS, Found
from vfd.plugins.hookspecs import hookimpl
from vfd.plugins.types import (
    AcceleratorSpec,
    ContainerContribution,
    DeviceInfo,
    DeviceRequest,
    Inventory,
    SessionView,
    SlotSpec,
    SlotUnit,
)

NAME = "cuda"
DEVICE = "cuda.device"
SHARES = "cuda.shares"
MODES = {"whole": DEVICE, "fractional": SHARES}
LEVELS = (0, 10, 20, 30, 40, 50)
"""NVML's topology levels (``nvmlGpuTopologyLevel_t``)."""
MIB = 1024 * 1024
VOID = "void"
"""``NVIDIA_VISIBLE_DEVICES`` of a container holding no GPU: the NVIDIA runtime gives it
none, whatever its image sets."""


# ---------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Options:
    """The ``[plugins.cuda]`` section, checked."""

    mode: str = "whole"
    unit_memory: int = 0
    """Bytes one share is worth (0: a device's own memory)."""
    unit_sm: int = 0
    """Streaming multiprocessors one share is worth (0: a device's own)."""
    devices: tuple[DeviceInfo, ...] | None = None
    """Declared devices (GPUs, then their MIG instances), replacing discovery; None =
    discover."""
    near: dict[str, dict[str, int]] = field(default_factory=dict)
    """Declared topology levels between declared GPUs (both ways)."""

    @property
    def slot(self) -> str:
        return MODES[self.mode]


def _where(index: int, entry: Mapping[str, Any]) -> str:
    uuid = entry.get("uuid")
    return f"[plugins.cuda] devices[{index}]" + (f" ({uuid})" if isinstance(uuid, str) else "")


def _size(value: Any, where: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{where}: {key} {value!r} is no size (bytes, or like '80GiB')")
    if isinstance(value, str):
        try:
            value = parse_size(value)
        except VfdError:
            raise ValueError(
                f"{where}: {key} {value!r} is no size (bytes, or like '80GiB')"
            ) from None
    if value <= 0:
        raise ValueError(f"{where}: {key} must be more than 0 bytes")
    return int(value)


def _count(value: Any, where: str, key: str, *, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{where}: {key} {value!r} is not a whole number of at least {least}")
    return value


def _keys(entry: Any, where: str, required: set[str], optional: set[str]) -> Mapping[str, Any]:
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: a table {{uuid, name, memory, sm, ...}} was expected")
    missing = sorted(required - set(entry))
    if missing:
        raise ValueError(f"{where}: {', '.join(missing)} missing")
    unknown = sorted(set(entry) - required - optional)
    if unknown:
        known = ", ".join(sorted(required | optional))
        raise ValueError(f"{where}: unknown key {', '.join(unknown)} (known: {known})")
    uuid = entry["uuid"]
    if not isinstance(uuid, str) or not uuid.strip() or "," in uuid:
        raise ValueError(f"{where}: uuid {uuid!r} is not a device id (GPU-..., MIG-...)")
    return entry


def _declared(raw: Any) -> tuple[tuple[DeviceInfo, ...], dict[str, dict[str, int]]]:
    """Declared devices and topology, checked (each error names its entry)."""
    if not isinstance(raw, list | tuple) or not raw:
        raise ValueError("[plugins.cuda] devices must be a non-empty list of tables")
    devices: list[DeviceInfo] = []
    seen: set[str] = set()
    gpus: list[tuple[str, str, Mapping[str, Any]]] = []
    for index, entry in enumerate(raw):
        where = _where(index, entry if isinstance(entry, Mapping) else {})
        entry = _keys(entry, where, {"uuid", "name", "memory", "sm"}, {"numa", "near", "mig"})
        uuid = entry["uuid"]
        if uuid in seen:
            raise ValueError(f"{where}: uuid {uuid} is declared twice")
        seen.add(uuid)
        if not isinstance(entry["name"], str) or not entry["name"]:
            raise ValueError(f"{where}: name {entry['name']!r} is not a name")
        numa = entry.get("numa")
        if numa is not None:
            numa = _count(numa, where, "numa", least=0)
        mig = entry.get("mig")
        gpu = DeviceInfo(
            id=uuid,
            name=entry["name"],
            memory=_size(entry["memory"], where, "memory"),
            sm=_count(entry["sm"], where, "sm", least=1),
            numa=numa,
            mig=mig is not None,
            declared=True,
        )
        devices.append(gpu)
        gpus.append((uuid, where, entry))
        if mig is None:
            continue
        if not isinstance(mig, list | tuple) or not mig:
            raise ValueError(f"{where}: mig must be a non-empty list of {{uuid, memory, sm}}")
        for j, inst in enumerate(mig):
            here = f"{where} mig[{j}]"
            inst = _keys(inst, here, {"uuid", "memory", "sm"}, {"name"})
            if inst["uuid"] in seen:
                raise ValueError(f"{here}: uuid {inst['uuid']} is declared twice")
            seen.add(inst["uuid"])
            memory = _size(inst["memory"], here, "memory")
            sm = _count(inst["sm"], here, "sm", least=1)
            if memory > gpu.memory or sm > gpu.sm:
                raise ValueError(f"{here}: a MIG instance larger than its GPU")
            devices.append(
                DeviceInfo(
                    id=inst["uuid"],
                    name=str(inst.get("name") or f"{gpu.name} MIG"),
                    memory=memory,
                    sm=sm,
                    numa=numa,
                    parent=uuid,
                    declared=True,
                )
            )
    gpu_ids = {uuid for uuid, _, _ in gpus}
    near: dict[str, dict[str, int]] = {uuid: {} for uuid in gpu_ids}
    for uuid, where, entry in gpus:
        table = entry.get("near")
        if table is None:
            continue
        if not isinstance(table, Mapping):
            raise ValueError(f"{where}: near must be a table {{GPU uuid = level}}")
        for other, level in table.items():
            if other == uuid or other not in gpu_ids:
                raise ValueError(f"{where}: near {other!r} is not another declared GPU")
            if isinstance(level, bool) or level not in LEVELS:
                raise ValueError(
                    f"{where}: near {other} = {level!r}: a level of {', '.join(map(str, LEVELS))}"
                )
            if near[other].get(uuid, level) != level:
                raise ValueError(f"{where}: near {other} = {level} but {other} says otherwise")
            near[uuid][other] = near[other][uuid] = level
    return tuple(devices), near


def options_of(section: Mapping[str, Any]) -> Options:
    """The ``[plugins.cuda]`` section checked; ``ValueError`` saying what is wrong, naming
    the option (and the device entry)."""
    known = {"mode", "unit_memory", "unit_sm", "devices"}
    unknown = sorted(set(section) - known)
    if unknown:
        names = ", ".join(sorted(known))
        raise ValueError(f"[plugins.cuda] unknown option {', '.join(unknown)} (known: {names})")
    mode = section.get("mode", "whole")
    if mode not in MODES:
        raise ValueError(f"[plugins.cuda] mode {mode!r} is not 'whole' or 'fractional'")
    unit_memory = section.get("unit_memory", 0)
    if unit_memory not in (0, "0"):
        unit_memory = _size(unit_memory, "[plugins.cuda]", "unit_memory")
    unit_sm = _count(section.get("unit_sm", 0), "[plugins.cuda]", "unit_sm", least=0)
    devices, near = (None, {}) if "devices" not in section else _declared(section["devices"])
    return Options(mode, int(unit_memory), unit_sm, devices, near)


# ---------------------------------------------------------------------------- units


def shares_of(device: DeviceInfo, options: Options) -> float:
    """What ``device`` is worth in ``cuda.shares``: floor to 0.1 of the smaller of its
    memory and SMs over a share's. A unit left at 0 does not count; with both at 0 each
    device is worth 1.0."""
    ratios = []
    if options.unit_memory:
        ratios.append(device.memory / options.unit_memory)
    if options.unit_sm and device.sm:
        ratios.append(device.sm / options.unit_sm)
    if not ratios:
        return 1.0
    return math.floor(min(ratios) * 10 + 1e-9) / 10


def offered(devices: Sequence[DeviceInfo]) -> list[DeviceInfo]:
    """The devices sessions may hold: GPUs not in MIG mode, and MIG instances."""
    return [d for d in devices if not d.mig]


def units_of(
    devices: Sequence[DeviceInfo], near: Mapping[str, Mapping[str, int]], options: Options
) -> tuple[SlotUnit, ...]:
    """One unit of the node's slot per offered device (a device worth no share is left out);
    ``near`` between devices: 0 for MIG instances of one GPU, else their GPUs' level."""
    offer = offered(devices)

    def gpu(d: DeviceInfo) -> str:
        return d.parent or d.id

    out = []
    for d in offer:
        capacity = 1.0 if options.mode == "whole" else shares_of(d, options)
        if capacity <= 0:
            continue
        levels: dict[str, int] = {}
        for e in offer:
            if e.id == d.id:
                continue
            level = 0 if gpu(e) == gpu(d) else near.get(gpu(d), {}).get(gpu(e))
            if level is not None:
                levels[e.id] = level
        out.append(SlotUnit(options.slot, d.id, capacity, numa=d.numa, near=levels))
    return tuple(out)


# ---------------------------------------------------------------------------- the accelerator


class Cuda:
    """The ``cuda`` accelerator of one node. ``nvml``: the NVML module (``pynvml`` when
    None); ``sys_root``: where sysfs is (tests)."""

    def __init__(
        self, section: Mapping[str, Any], *, nvml: Any = None, sys_root: Path = SYS
    ) -> None:
        self.options = options_of(section)
        self.sys_root = sys_root
        self._nvml = nvml
        self.devices: dict[str, DeviceInfo] = {}

    def found(self) -> Found:
        if self.options.devices is not None:
            devices = self.options.devices
            gpus = sum(1 for d in devices if d.parent is None)
            migs = len(devices) - gpus
            status = f"{gpus} declared GPU{'s' if gpus != 1 else ''}"
            if migs:
                status += f", {migs} MIG instance{'s' if migs != 1 else ''}"
            return Found(devices, self.options.near, status + " ([plugins.cuda] devices)")
        if self._nvml is None:
            self._nvml, missing = cuda_nvml.load_nvml()
            if self._nvml is None:
                return Found(status=f"no devices: {missing}")
        return cuda_nvml.discover(self._nvml, self.sys_root)

    def inventory(self) -> Inventory:
        found = self.found()
        self.devices = {d.id: d for d in found.devices}
        units = units_of(found.devices, found.near, self.options)
        status = found.status
        if found.devices and self.options.mode == "fractional":
            status += f"; {sum(u.capacity for u in units):g} {SHARES}"
        global _active
        _active = self
        return Inventory(devices=found.devices, units=units, status=status)

    def usage(self, devices: Sequence[str]) -> Mapping[str, Mapping[str, Any]]:
        if self.options.devices is not None or self._nvml is None:
            return {}
        return cuda_nvml.usage(self._nvml, [d for d in devices if d in self.devices])

    def numa_nodes(self) -> int:
        """How many NUMA nodes the machine has (sysfs; 1 when it does not say)."""
        try:
            nodes = list((self.sys_root / "devices" / "system" / "node").glob("node[0-9]*"))
        except OSError:
            return 1
        return max(1, len(nodes))

    def cpulist(self, numa: int) -> str | None:
        path = self.sys_root / "devices" / "system" / "node" / f"node{numa}" / "cpulist"
        try:
            text = path.read_text().strip()
        except OSError:
            return None
        return text or None

    def contribution(self, session: SessionView) -> ContainerContribution:
        """What ``session``'s container gets for the devices it holds (docs/accelerators.md):
        ``NVIDIA_VISIBLE_DEVICES`` (``void`` when none), a device request of the nvidia
        driver for discovered devices, the MPS limits of shares, and the CPUs of the
        devices' NUMA node on a machine of several."""
        held = [a for a in session.allocation if a.slot in (DEVICE, SHARES)]
        if not held:
            return ContainerContribution(env={"NVIDIA_VISIBLE_DEVICES": VOID})
        ids: list[str] = []
        for a in held:
            if a.device not in self.devices:
                raise ValueError(
                    f"device {a.device} of the session's allocation is not one of this node's "
                    f"({', '.join(sorted(self.devices)) or 'none found'})"
                )
            if a.device not in ids:
                ids.append(a.device)
        devices = [self.devices[i] for i in ids]
        env = {"NVIDIA_VISIBLE_DEVICES": ",".join(ids)}
        shares = [a for a in held if a.slot == SHARES]
        if shares:
            limits, fractions = [], []
            for a in shares:
                device = self.devices[a.device]
                worth = shares_of(device, self.options) or 1.0
                fraction = min(1.0, a.amount / worth)
                fractions.append(fraction)
                limits.append(
                    f"{ids.index(a.device)}={math.floor(device.memory * fraction / MIB)}M"
                )
            env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] = ",".join(limits)
            env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = str(
                max(1, math.floor(min(fractions) * 100 + 1e-9))
            )
        requests: tuple[DeviceRequest, ...] = ()
        if not any(d.declared for d in devices):
            requests = (
                DeviceRequest(
                    driver="nvidia",
                    device_ids=tuple(ids),
                    capabilities=(("gpu", "utility", "compute"),),
                ),
            )
        cpuset = None
        numas = {d.numa for d in devices}
        if len(numas) == 1 and None not in numas and self.numa_nodes() > 1:
            (numa,) = numas
            assert numa is not None
            cpuset = self.cpulist(numa)
        return ContainerContribution(env=env, device_requests=requests, cpuset_cpus=cpuset)


_active: Cuda | None = None
"""The accelerator this process built and asked for its devices last (a daemon builds one,
when it starts): the devices ``vfd_container_spec`` gives out."""


def factory(section: Mapping[str, Any]) -> Cuda:
    return Cuda(section)


SPEC = AcceleratorSpec(
    name=NAME,
    description="NVIDIA GPUs and MIG instances (NVML, or [plugins.cuda] devices)",
    slots=(
        SlotSpec(DEVICE, 1.0, "whole GPUs or MIG instances ([plugins.cuda] mode = 'whole')"),
        SlotSpec(
            SHARES,
            0.1,
            "shares of a GPU, MPS-limited ([plugins.cuda] mode = 'fractional')",
        ),
    ),
    factory=factory,
)


@hookimpl
def vfd_register_accelerators() -> Sequence[AcceleratorSpec]:
    return [SPEC]


@hookimpl
def vfd_container_spec(session: SessionView) -> ContainerContribution | None:
    if _active is None:
        if session.allocation:
            raise ValueError("the cuda accelerator has not found this node's devices")
        return ContainerContribution(env={"NVIDIA_VISIBLE_DEVICES": VOID})
    return _active.contribution(session)
