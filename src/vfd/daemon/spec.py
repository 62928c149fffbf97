"""A session's container spec: what vfd sets, with every plugin's contribution merged in.

vfd sets the user and groups, ``HOME=/home/work``, ``VFD_SESSION_ID`` and ``VFD_SESSION_NAME``,
the ``vfd.*`` labels (``vfd.allocation``: the devices a session holds, as compact JSON, read
back by a restarted daemon), the folder binds and ``/home/work`` itself, the cpu and memory
limits. Plugins (``vfd_container_spec``) add env, binds, labels, device requests, the cpu set
and other resource limits; a plugin setting something vfd sets, or two plugins setting the same
thing (two cpu sets included), is an error naming the plugin(s) — the session then ends
``error`` (``plugin_failed``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any, TypeVar

from vfd.daemon import workdir
from vfd.daemon.containers import Bind, ContainerSpec
from vfd.daemon.services import session_slots
from vfd.daemon.services.context import Daemon
from vfd.errors import ErrorCode, VfdError
from vfd.plugins.types import ContainerContribution, SessionView

_V = TypeVar("_V")

HOME = "/home/work"
LABEL_PREFIX = "vfd."
VFD_LIMITS = frozenset(
    {
        "nano_cpus",
        "cpu_quota",
        "cpu_period",
        "mem_limit",
        "memswap_limit",
        "init",
        "security_opt",
        "cap_add",
        "cap_drop",
        "privileged",
        "user",
        "group_add",
        "mounts",
        "volumes",
        "binds",
        "userns_mode",
        "pid_mode",
        "ipc_mode",
        "network_mode",
        "devices",
        "device_requests",
        "cpuset_cpus",
    }
)
"""Container settings no plugin may make: vfd's own, or ones that would undo its isolation."""


def _plugin_error(message: str, plugin: str, **details: Any) -> VfdError:
    return VfdError(ErrorCode.PLUGIN_FAILED, message, plugin=plugin, **details)


def _nested(a: str, b: str) -> bool:
    a, b = a.rstrip("/") or "/", b.rstrip("/") or "/"
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def _claim(taken: dict[str, tuple[str, _V]], key: str, value: _V, plugin: str, what: str) -> None:
    """Record plugin's value for key, refusing a key another plugin already set."""
    if key in taken:
        other = taken[key][0]
        raise _plugin_error(
            f"plugins {other} and {plugin} both set {what}", plugin, plugins=[other]
        )
    taken[key] = (plugin, value)


def merge(
    view: SessionView,
    binds: Sequence[Bind],
    contributions: Sequence[tuple[str, ContainerContribution]],
) -> tuple[dict[str, str], dict[str, str], list[Bind], list[dict[str, Any]], dict[str, int]]:
    """(env, labels, plugin binds, device requests, limits) of all plugins, checked."""
    env: dict[str, tuple[str, str]] = {}
    labels: dict[str, tuple[str, str]] = {}
    limits: dict[str, tuple[str, int]] = {}
    mounts: list[tuple[str, Bind]] = []
    devices: list[dict[str, Any]] = []
    vfd_targets = [HOME, *(b.target for b in binds)]
    for plugin, got in contributions:
        for key, value in got.env.items():
            if key == "HOME" or key.startswith("VFD_"):
                raise _plugin_error(f"plugin {plugin} sets env {key}, which vfd sets", plugin)
            _claim(env, key, str(value), plugin, f"env {key}")
        for key, value in got.labels.items():
            if key.startswith(LABEL_PREFIX):
                raise _plugin_error(f"plugin {plugin} sets label {key}; vfd.* are vfd's", plugin)
            _claim(labels, key, str(value), plugin, f"label {key}")
        for key, amount in got.limits.items():
            if key in VFD_LIMITS:
                raise _plugin_error(f"plugin {plugin} sets {key}, which vfd sets", plugin)
            _claim(limits, key, int(amount), plugin, key)
        for mount in got.mounts:
            if not mount.target.startswith("/"):
                raise _plugin_error(
                    f"plugin {plugin} mounts onto {mount.target!r}, not an absolute path", plugin
                )
            for target in vfd_targets:
                if mount.target.rstrip("/") == target or (
                    target != HOME and _nested(mount.target, target)
                ):
                    raise _plugin_error(
                        f"plugin {plugin} mounts onto {mount.target}, where vfd mounts a "
                        "folder or the home directory",
                        plugin,
                    )
            for other, seen in mounts:
                if _nested(seen.target, mount.target):
                    raise _plugin_error(
                        f"plugins {other} and {plugin} both mount onto {mount.target}",
                        plugin,
                        plugins=[other],
                    )
            mounts.append((plugin, Bind(mount.source, mount.target, mount.read_only)))
        for request in got.device_requests:
            raw = asdict(request)
            devices.append(
                {
                    "driver": raw["driver"],
                    "device_ids": list(raw["device_ids"]) or None,
                    "count": raw["count"],
                    "capabilities": [list(c) for c in raw["capabilities"]] or None,
                    "options": dict(raw["options"]),
                }
            )
    return (
        {k: v for k, (_, v) in env.items()},
        {k: v for k, (_, v) in labels.items()},
        [b for _, b in mounts],
        devices,
        {k: v for k, (_, v) in limits.items()},
    )


def merge_cpuset(contributions: Sequence[tuple[str, ContainerContribution]]) -> str | None:
    """The cpu set one plugin asked for (``cpuset_cpus``); two plugins setting one clash."""
    taken: dict[str, tuple[str, str]] = {}
    for plugin, got in contributions:
        if got.cpuset_cpus is not None:
            _claim(taken, "cpuset_cpus", got.cpuset_cpus, plugin, "the cpu set (cpuset_cpus)")
    return taken["cpuset_cpus"][1] if taken else None


ALLOCATION_LABEL = "vfd.allocation"
"""The label holding a session's allocation (compact JSON) on its container."""


def vfd_labels(view: SessionView) -> dict[str, str]:
    labels = {
        "vfd.session": str(view.id),
        "vfd.node": view.node,
        "vfd.user": str(view.user_id),
    }
    if view.allocation:
        labels[ALLOCATION_LABEL] = session_slots.allocation_label(view.allocation)
    return labels


def container_name(view: SessionView) -> str:
    """Docker's name of the container: unique per session (docker names are global)."""
    return f"vfd-{view.name}-{view.id.hex[:8]}"


async def build_spec(
    daemon: Daemon, view: SessionView, binds: Sequence[Bind], groups: Sequence[int]
) -> ContainerSpec:
    """The whole spec of ``view``'s container (plugins asked on the loop; no blocking)."""
    contributions = await daemon.plugins.container_spec(view)
    env, labels, plugin_binds, devices, limits = merge(view, binds, contributions)
    cpuset = merge_cpuset(contributions)
    home = Bind(str(workdir.work_dir(daemon.config, view.id)), HOME, read_only=False)
    all_env: Mapping[str, str] = {
        **view.env,
        **env,
        "HOME": HOME,
        "VFD_SESSION_ID": str(view.id),
        "VFD_SESSION_NAME": view.name,
    }
    return ContainerSpec(
        image=view.image,
        command=list(view.command),
        name=container_name(view),
        hostname=view.name[:63],
        user=f"{view.uid}:{view.gid}",
        group_add=list(groups),
        env=dict(all_env),
        labels={**labels, **vfd_labels(view)},
        binds=[home, *binds, *plugin_binds],
        nano_cpus=int(view.cpu * 1e9),
        mem_limit=view.memory,
        device_requests=devices,
        limits=limits,
        cpuset_cpus=cpuset,
    )
