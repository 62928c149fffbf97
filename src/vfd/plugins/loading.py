"""Finding, importing and registering plugins: what :func:`vfd.plugins.manager.build_manager`
does before the daemon calls any hook.

Every plugin comes from an entry point of the ``vfd`` group — vfd's own built-ins included,
through the ``vfd`` distribution's entry points — or, in tests, is handed over as an object
(``vfd.plugins.testing``). Each step that can fail is taken one plugin at a time, and a
plugin that fails it is recorded with its error and left out; the others go on:

1. blocked (``[plugins] block`` names its entry point or its distribution): never imported;
2. import (``EntryPoint.load``);
3. registration with pluggy (a malformed hook implementation, an argument its spec does not
   have, a hook wrapper — vfd calls each implementation on its own, so wrappers are refused);
4. ``check_pending`` for that plugin alone: a ``vfd_*`` hook vfd does not know (a typo, or a
   hook of a newer vfd) is that plugin's load error;
5. its registration hooks (``vfd_register_schedulers``, ``vfd_register_apps``,
   ``vfd_register_accelerators``): what each returns must be a list of
   :class:`~vfd.plugins.types.SchedulerSpec` (of :class:`~vfd.plugins.types.AppSpec`, each
   named by the rule of service names; of :class:`~vfd.plugins.types.AcceleratorSpec`, each
   slot named ``ACCELERATOR.KIND`` with a positive quantum).

A scheduler, app, accelerator or slot name offered by two plugins is not one plugin's fault:
loading stops with an error naming both, and the daemon does not start until one of them is
blocked.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import logging
import math
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pluggy

from vfd.errors import ErrorCode, VfdError
from vfd.plugins import hookspecs
from vfd.plugins.types import AcceleratorSpec, AppSpec, SchedulerSpec, SlotSpec

log = logging.getLogger(__name__)
trace_log = logging.getLogger("vfd.plugins.trace")

_Spec = TypeVar("_Spec", SchedulerSpec, AppSpec, AcceleratorSpec)

GROUP = "vfd"
"""The entry-point group plugins are found in."""
BUILTIN_DISTRIBUTION = "vfd"


@dataclass
class PluginRecord:
    """One plugin as ``vfd plugins`` lists it: loaded (``error`` None) or failed."""

    name: str
    """The name it is registered under: its entry point's name."""
    distribution: str | None
    version: str | None
    builtin: bool
    hooks: tuple[str, ...] = ()
    error: str | None = None
    """Why it was left out (import, registration, configuration); None when loaded."""
    calls_failed: int = 0
    """Notification calls that raised since the daemon started (each logged and isolated)."""
    last_failure: dict[str, str] | None = None
    """``{"hook", "error", "at"}`` of the latest such call."""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "builtin": self.builtin,
            "hooks": list(self.hooks),
            "error": self.error,
            "calls_failed": self.calls_failed,
            "last_failure": self.last_failure,
        }


@dataclass
class Loaded:
    """What loading made: the pluggy manager with every plugin that loaded, a record per
    plugin (loaded or not), the blocked names, and the schedulers offered."""

    pm: pluggy.PluginManager
    records: dict[str, PluginRecord] = field(default_factory=dict)
    blocked: list[str] = field(default_factory=list)
    schedulers: dict[str, tuple[str, SchedulerSpec]] = field(default_factory=dict)
    """Scheduler name -> (plugin name, spec)."""
    apps: dict[str, tuple[str, AppSpec]] = field(default_factory=dict)
    """App name -> (plugin name, spec)."""
    accelerators: dict[str, tuple[str, AcceleratorSpec]] = field(default_factory=dict)
    """Accelerator name -> (plugin name, spec)."""
    trace: bool = False
    """``[plugins] trace``: log the registration calls too."""


def describe(exc: BaseException) -> str:
    """An exception as one line for a listing: ``Type: message`` (its lines joined)."""
    text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def hooks_of(pm: pluggy.PluginManager, plugin: object) -> tuple[str, ...]:
    """The ``vfd_*`` hooks ``plugin`` implements, sorted."""
    return tuple(sorted(caller.name for caller in pm.get_hookcallers(plugin) or ()))


def new_pluggy() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def load(
    block: Iterable[str],
    entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
    objects: Iterable[tuple[str, object]] = (),
    *,
    trace: bool = False,
) -> Loaded:
    """Load the plugins of ``entry_points`` (default: every installed one of the ``vfd``
    group), then ``objects`` (``(name, plugin)`` pairs, for tests), skipping blocked names.

    Raises ``config_invalid`` only for a scheduler or app name two plugins offer.
    """
    blocked = {name.strip().lower() for name in block}
    loaded = Loaded(pm=new_pluggy(), trace=trace)
    if entry_points is None:
        entry_points = importlib.metadata.entry_points(group=GROUP)
    for ep in entry_points:
        dist = ep.dist
        dist_name = dist.metadata["Name"] if dist is not None else None
        version = dist.version if dist is not None else None
        builtin = dist_name is not None and _norm(dist_name) == BUILTIN_DISTRIBUTION
        if ep.name.lower() in blocked or (dist_name and _norm(dist_name) in blocked):
            loaded.blocked.append(ep.name)
            continue
        record = PluginRecord(ep.name, dist_name, version, builtin)
        if ep.name in loaded.records:
            other = loaded.records[ep.name].distribution
            record.error = f"the plugin name {ep.name!r} is taken by distribution {other}"
            loaded.records[f"{ep.name} ({dist_name})"] = record
            continue
        loaded.records[ep.name] = record
        try:
            plugin = ep.load()
        except (Exception, SystemExit) as exc:
            log.debug("plugin %s failed to import", ep.name, exc_info=True)
            record.error = f"import failed: {describe(exc)}"
            continue
        register(loaded, record, plugin)
    for name, plugin in objects:
        if name.lower() in blocked:
            loaded.blocked.append(name)
            continue
        if name in loaded.records:
            raise ValueError(f"the plugin name {name!r} is taken")
        record = loaded.records[name] = PluginRecord(name, None, None, builtin=False)
        register(loaded, record, plugin)
    return loaded


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def register(loaded: Loaded, record: PluginRecord, plugin: object) -> None:
    """Register ``plugin`` and check it; on any failure it is unregistered again and
    ``record.error`` says why."""
    pm = loaded.pm
    try:
        pm.register(plugin, name=record.name)
    except (ValueError, pluggy.PluginValidationError) as exc:
        record.error = f"cannot register: {describe(exc)}"
        return
    try:
        _check(pm, record.name, plugin)
        specs = _registrations(pm, record.name, loaded.trace)
        apps = _app_registrations(pm, record.name, loaded.trace)
        accelerators = _accelerator_registrations(pm, record.name, loaded.trace)
    except Exception as exc:
        pm.unregister(name=record.name)
        record.error = str(exc) if isinstance(exc, _Invalid) else describe(exc)
        return
    _clash(record.name, "scheduler", [s.name for s in specs], loaded.schedulers)
    _clash(record.name, "app", [a.name for a in apps], loaded.apps)
    _clash(record.name, "accelerator", [a.name for a in accelerators], loaded.accelerators)
    slot_owners = {
        slot.name: (plugin, slot)
        for plugin, spec in loaded.accelerators.values()
        for slot in spec.slots
    }
    _clash(record.name, "slot", [s.name for a in accelerators for s in a.slots], slot_owners)
    for spec in specs:
        loaded.schedulers[spec.name] = (record.name, spec)
    for app in apps:
        loaded.apps[app.name] = (record.name, app)
    for accelerator in accelerators:
        loaded.accelerators[accelerator.name] = (record.name, accelerator)
    record.hooks = hooks_of(pm, plugin)


def _clash(plugin: str, what: str, names: list[str], taken: dict[str, tuple[str, Any]]) -> None:
    """``config_invalid`` naming both plugins when one of ``names`` is taken already."""
    for name in names:
        if name in taken:
            other = taken[name][0]
            raise VfdError(
                ErrorCode.CONFIG_INVALID,
                f"plugins {other} and {plugin} both register {_article(what)} "
                f"{what} named {name!r}: block one of them in the config ([plugins] block = "
                f'["{plugin}"])',
                **{what: name},
                plugins=[other, plugin],
            )


def _article(word: str) -> str:
    return "an" if word[0].lower() in "aeiou" else "a"


class _Invalid(Exception):
    """A plugin's hooks break vfd's rules (the message is the whole story)."""


def _check(pm: pluggy.PluginManager, name: str, plugin: object) -> None:
    """``check_pending`` for ``plugin`` alone, and no wrappers."""
    for caller in pm.get_hookcallers(plugin) or ():
        for impl in caller.get_hookimpls():
            if impl.plugin is not plugin:
                continue
            if not caller.has_spec() and not impl.optionalhook:
                raise _Invalid(
                    f"unknown hook {caller.name!r} (this vfd has no such hook: "
                    "a misspelt name, or a plugin made for another vfd version)"
                )
            if impl.wrapper or impl.hookwrapper:
                raise _Invalid(
                    f"{caller.name}: hook wrappers are not supported (vfd calls each "
                    "implementation on its own)"
                )


APP_NAME = re.compile(r"[a-z][a-z0-9-]{0,31}")
"""The rule of app names: that of service names (``vfd.apps.service_ports``), whose
namespace they share in ``vfd session apps``."""


def _registrations(pm: pluggy.PluginManager, name: str, trace: bool) -> list[SchedulerSpec]:
    """What plugin ``name``'s ``vfd_register_schedulers`` returns, checked."""
    got = _collect(pm, name, trace, "vfd_register_schedulers", SchedulerSpec)
    for spec in got:
        if not spec.name or not callable(spec.factory):
            raise _Invalid(
                f"vfd_register_schedulers returned {spec!r}: a SchedulerSpec with a "
                "name and a factory was expected"
            )
    return got


def _app_registrations(pm: pluggy.PluginManager, name: str, trace: bool) -> list[AppSpec]:
    """What plugin ``name``'s ``vfd_register_apps`` returns, checked."""
    got = _collect(pm, name, trace, "vfd_register_apps", AppSpec)
    for spec in got:
        if not isinstance(spec.name, str) or not APP_NAME.fullmatch(spec.name):
            raise _Invalid(
                f"vfd_register_apps: app name {spec.name!r}: 1-32 lowercase letters, digits "
                "or '-', starting with a letter (the rule of service names)"
            )
        if not isinstance(spec.module, str) or not all(
            part.isidentifier() for part in spec.module.split(".")
        ):
            raise _Invalid(
                f"vfd_register_apps: app {spec.name}: module {spec.module!r} is no module name"
            )
        if not callable(spec.plan):
            raise _Invalid(f"vfd_register_apps: app {spec.name}: plan is not callable")
    return got


ACCELERATOR_NAME = re.compile(r"[a-z][a-z0-9-]{0,31}")
"""The rule of accelerator names; a slot is named ``ACCELERATOR.KIND`` with a kind by the
same rule (``cuda.device``)."""


def _accelerator_registrations(
    pm: pluggy.PluginManager, name: str, trace: bool
) -> list[AcceleratorSpec]:
    """What plugin ``name``'s ``vfd_register_accelerators`` returns, checked."""
    hook = "vfd_register_accelerators"
    got = _collect(pm, name, trace, hook, AcceleratorSpec)
    for spec in got:
        if not isinstance(spec.name, str) or not ACCELERATOR_NAME.fullmatch(spec.name):
            raise _Invalid(
                f"{hook}: accelerator name {spec.name!r}: 1-32 lowercase letters, digits or "
                "'-', starting with a letter"
            )
        if not callable(spec.factory):
            raise _Invalid(f"{hook}: accelerator {spec.name}: factory is not callable")
        if not isinstance(spec.slots, list | tuple) or not spec.slots:
            raise _Invalid(f"{hook}: accelerator {spec.name}: slots must be a list of SlotSpec")
        seen: set[str] = set()
        for slot in spec.slots:
            if not isinstance(slot, SlotSpec):
                raise _Invalid(
                    f"{hook}: accelerator {spec.name}: slot {slot!r}: a SlotSpec was expected"
                )
            prefix, _, kind = str(slot.name).partition(".")
            if prefix != spec.name or not ACCELERATOR_NAME.fullmatch(kind):
                raise _Invalid(
                    f"{hook}: accelerator {spec.name}: slot name {slot.name!r} is not "
                    f"'{spec.name}.KIND' (KIND: lowercase letters, digits or '-')"
                )
            quantum = slot.quantum
            if (
                isinstance(quantum, bool)
                or not isinstance(quantum, int | float)
                or not math.isfinite(quantum)
                or quantum <= 0
            ):
                raise _Invalid(
                    f"{hook}: slot {slot.name}: quantum {quantum!r} is not a positive number"
                )
            if slot.name in seen:
                raise _Invalid(f"{hook}: accelerator {spec.name} offers slot {slot.name} twice")
            seen.add(slot.name)
    return got


def _collect(
    pm: pluggy.PluginManager, name: str, trace: bool, hook: str, kind: type[_Spec]
) -> list[_Spec]:
    """What plugin ``name``'s registration hook ``hook`` returns: a list of ``kind``, one
    name once."""
    specs: list[_Spec] = []
    for impl in getattr(pm.hook, hook).get_hookimpls():
        if impl.plugin_name != name:
            continue
        began = time.perf_counter()
        got: Any = impl.function()
        if trace:
            trace_log.info(
                "hook %s plugin %s: %.3f ms, ok",
                hook,
                name,
                (time.perf_counter() - began) * 1000,
            )
        if inspect.isawaitable(got):
            if inspect.iscoroutine(got):
                got.close()
            raise _Invalid(f"{hook} must return its list, not an awaitable")
        if isinstance(got, str | bytes) or not isinstance(got, list | tuple):
            raise _Invalid(
                f"{hook} must return a list of {kind.__name__}, not {type(got).__name__}"
            )
        for spec in got:
            if not isinstance(spec, kind):
                article = _article(kind.__name__)
                raise _Invalid(f"{hook} returned {spec!r}: {article} {kind.__name__} was expected")
        names = [spec.name for spec in got]
        if len(set(names)) != len(names):
            raise _Invalid(f"{hook} returns one name twice: {names}")
        specs.extend(got)
    return specs
