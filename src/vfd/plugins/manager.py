"""The plugin manager of one daemon: built by :func:`build_manager`, never at import.

Plugins are found, imported and checked by :mod:`vfd.plugins.loading` (built-ins through the
``vfd`` distribution's own entry points, exactly as third-party ones). The daemon calls hooks
only through :class:`Plugins`, which

- calls every implementation on its own, with keyword arguments, and awaits what it returns
  when that is awaitable;
- attributes a veto (:class:`~vfd.plugins.types.Reject`) to its plugin;
- logs and isolates a notification hook that raises (counted in the plugin's listing);
- with ``[plugins] trace = true``, logs every call with its plugin and duration.

``vfd_configure`` runs once, in :meth:`Plugins.start` (the application's lifespan, before the
daemon serves); a plugin that raises there is unregistered and listed with its error. Then
:meth:`Plugins.discover` builds each registered accelerator from its plugin's section and
asks it for the node's devices, once (a worker thread each): the daemon reports them with its
node (:meth:`Plugins.agent_accelerators`) and sessions ask for their slots
(:meth:`Plugins.slot_specs`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import pluggy
from pluggy import HookImpl

from vfd.config import Config
from vfd.errors import ErrorCode, VfdError
from vfd.plugins import loading
from vfd.plugins.loading import Loaded, PluginRecord, describe
from vfd.plugins.types import (
    Accelerator,
    AcceleratorSpec,
    AppSpec,
    AppView,
    ContainerContribution,
    Inventory,
    Reject,
    Scheduler,
    SchedulerSpec,
    SessionRequest,
    SessionView,
    SlotSpec,
)
from vfd.scheduling.slots import unit_json

log = logging.getLogger(__name__)
trace_log = logging.getLogger("vfd.plugins.trace")


class Vetoed(Exception):
    """A plugin refused a session's start (``vfd_session_before_start`` raised Reject)."""

    def __init__(self, plugin: str, reason: str) -> None:
        super().__init__(f"{plugin}: {reason}")
        self.plugin = plugin
        self.reason = reason


class Plugins:
    """The hooks of one daemon's plugins, called the way vfd's contracts say."""

    def __init__(self, config: Config, loaded: Loaded) -> None:
        self.config = config
        self.loaded = loaded
        self.trace = config.plugin_trace
        self._started = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._discovered = False
        self._built: dict[str, Accelerator] = {}
        self._inventories: dict[str, Inventory] = {}

    @property
    def pm(self) -> pluggy.PluginManager:
        return self.loaded.pm

    @property
    def schedulers(self) -> dict[str, tuple[str, SchedulerSpec]]:
        """Scheduler name -> (plugin name, spec)."""
        return self.loaded.schedulers

    @property
    def apps(self) -> dict[str, tuple[str, AppSpec]]:
        """App name -> (plugin name, spec): the apps sessions may run."""
        return self.loaded.apps

    @property
    def records(self) -> list[PluginRecord]:
        """Every plugin found, loaded or failed, in load order."""
        return list(self.loaded.records.values())

    @property
    def blocked(self) -> list[str]:
        return list(self.loaded.blocked)

    # ------------------------------------------------------------------ start and listing

    async def start(self) -> None:
        """Call every ``vfd_configure`` once (a plugin that raises is unregistered and listed
        with its error), remember the daemon's loop, and log one line per plugin. Later calls
        do nothing."""
        if self._started:
            return
        self._started = True
        self._loop = asyncio.get_running_loop()
        sections = MappingProxyType(
            {name: MappingProxyType(dict(table)) for name, table in self.config.plugins.items()}
        )
        for impl in self._impls("vfd_configure"):
            try:
                await self._call(impl, "vfd_configure", {"sections": sections})
            except Exception as exc:
                log.error(
                    "plugin %s failed in vfd_configure: %s", impl.plugin_name, exc, exc_info=exc
                )
                self._fail(impl.plugin_name, f"vfd_configure failed: {describe(exc)}")
        for record in self.records:
            if record.error is None:
                log.info(
                    "plugin %s loaded (%s%s; hooks: %s)",
                    record.name,
                    f"{record.distribution} {record.version}" if record.distribution else "given",
                    ", built in" if record.builtin else "",
                    ", ".join(record.hooks) or "none",
                )
            else:
                log.warning("plugin %s failed and is left out: %s", record.name, record.error)
        for name in self.loaded.blocked:
            log.info("plugin %s blocked by [plugins] block: not imported", name)
        await self.discover()

    def listing(self) -> dict[str, Any]:
        """``GET /v1/plugins``: every plugin, the schedulers, the apps, the blocked names."""
        return {
            "plugins": [record.to_json() for record in self.records],
            "schedulers": [
                {"name": name, "plugin": plugin, "description": spec.description}
                for name, (plugin, spec) in sorted(self.schedulers.items())
            ],
            "apps": [
                {"name": name, "plugin": plugin, "description": spec.description}
                for name, (plugin, spec) in sorted(self.apps.items())
            ],
            "accelerators": [
                self._accelerator_json(name, plugin, spec)
                for name, (plugin, spec) in sorted(self.accelerators().items())
            ],
            "blocked": self.blocked,
        }

    def _accelerator_json(self, name: str, plugin: str, spec: AcceleratorSpec) -> dict[str, Any]:
        inventory = self._inventories.get(name)
        return {
            "name": name,
            "plugin": plugin,
            "description": spec.description,
            "slots": [
                {"name": s.name, "quantum": s.quantum, "description": s.description}
                for s in spec.slots
            ],
            "status": inventory.status if inventory is not None else NOT_DISCOVERED,
            "devices": len(inventory.devices) if inventory is not None else 0,
        }

    def add(self, name: str, plugin: object) -> PluginRecord:
        """Register ``plugin`` under ``name`` while the daemon runs (tests: one plugin for
        one test). It is checked as a loaded plugin is; its ``vfd_configure`` is not called.
        """
        if name in self.loaded.records:
            raise ValueError(f"the plugin name {name!r} is taken")
        record = self.loaded.records[name] = PluginRecord(name, None, None, builtin=False)
        loading.register(self.loaded, record, plugin)
        return record

    def remove(self, name: str) -> None:
        """Unregister plugin ``name`` and forget it (the reverse of :meth:`add`)."""
        if self.pm.get_plugin(name) is not None:
            self.pm.unregister(name=name)
        self.loaded.records.pop(name, None)
        self._drop_schedulers(name)

    def _drop_schedulers(self, name: str) -> None:
        """Forget the schedulers, apps and accelerators plugin ``name`` registered."""
        for sched, (plugin, _) in list(self.schedulers.items()):
            if plugin == name:
                del self.schedulers[sched]
        for app, (plugin, _) in list(self.apps.items()):
            if plugin == name:
                del self.apps[app]
        for accel, (plugin, _) in list(self.loaded.accelerators.items()):
            if plugin == name:
                del self.loaded.accelerators[accel]
                self._built.pop(accel, None)
                self._inventories.pop(accel, None)

    def _fail(self, name: str, error: str) -> None:
        """Leave plugin ``name`` out from now on, listed with ``error``."""
        self.pm.unregister(name=name)
        record = self.loaded.records[name]
        record.error, record.hooks = error, ()
        self._drop_schedulers(name)

    # ------------------------------------------------------------------ accelerators

    def accelerators(self) -> dict[str, tuple[str, AcceleratorSpec]]:
        """Accelerator name -> (plugin name, spec): those ``vfd_register_accelerators``
        registered (a failed plugin's are gone)."""
        return dict(self.loaded.accelerators)

    def slot_specs(self) -> dict[str, SlotSpec]:
        """Every slot a session may ask for, by name (``cuda.device``, ``cuda.shares``)."""
        return {
            slot.name: slot for _, spec in self.loaded.accelerators.values() for slot in spec.slots
        }

    async def discover(self) -> None:
        """Build each accelerator from its plugin's ``[plugins.<plugin>]`` section and ask it
        for this node's devices (``inventory()`` in a worker thread), once; later calls do
        nothing. Never raises: a factory that raises (a bad section) fails its plugin, listed
        with the error; an inventory that raises or answers something else than an
        :class:`Inventory` leaves the accelerator with no devices and the status
        ``discovery failed: ...``."""
        if self._discovered:
            return
        self._discovered = True
        for name, (plugin, spec) in self.accelerators().items():
            options = MappingProxyType(dict(self.config.plugins.get(plugin, {})))
            try:
                accelerator = spec.factory(options)
            except Exception as exc:
                log.error("plugin %s: accelerator %s: %s", plugin, name, describe(exc))
                self._fail(plugin, f"accelerator {name}: {describe(exc)}")
                continue
            self._built[name] = accelerator
            self._inventories[name] = inventory = await asyncio.to_thread(
                _inventory_of, name, spec, accelerator
            )
            log.info("accelerator %s (plugin %s): %s", name, plugin, inventory.status)

    def inventories(self) -> dict[str, Inventory]:
        """What each accelerator found, by name (after :meth:`discover`)."""
        return dict(self._inventories)

    def agent_accelerators(self) -> dict[str, Any] | None:
        """What this node reports of its accelerators (the agent row's ``accelerators``):
        ``{NAME: {"status", "devices": [...], "units": [...]}}``; None when no plugin
        registers an accelerator."""
        if not self.loaded.accelerators:
            return None
        out: dict[str, Any] = {}
        for name in sorted(self.loaded.accelerators):
            inventory = self._inventories.get(name) or Inventory(status=NOT_DISCOVERED)
            out[name] = {
                "status": inventory.status,
                "devices": [d.as_json() for d in inventory.devices],
                "units": [unit_json(u) for u in inventory.units],
            }
        return out

    def device_usage(self, devices: Sequence[str]) -> dict[str, dict[str, Any]]:
        """What each of ``devices`` (ids) is doing now, asked of the accelerator that found
        it (blocking: call it in a worker thread); a device no accelerator answers for is
        missing. An accelerator that raises is logged and answers nothing."""
        out: dict[str, dict[str, Any]] = {}
        for name, accelerator in self._built.items():
            inventory = self._inventories.get(name)
            if inventory is None:
                continue
            known = {d.id for d in inventory.devices}
            mine = [d for d in devices if d in known]
            if not mine:
                continue
            try:
                got = accelerator.usage(mine)
            except Exception as exc:
                log.warning("accelerator %s: usage failed: %s", name, describe(exc))
                continue
            for device, figures in got.items():
                if device in known:
                    out[device] = dict(figures)
        return out

    # ------------------------------------------------------------------ the hooks

    async def validate_session(self, request: SessionRequest) -> None:
        """Every ``vfd_validate_session``; a Reject becomes ``session_rejected`` naming the
        plugin, any other exception ``plugin_failed`` naming it (the request is refused)."""
        for impl in self._impls("vfd_validate_session"):
            try:
                await self._call(impl, "vfd_validate_session", {"request": request})
            except Reject as exc:
                raise VfdError(
                    ErrorCode.SESSION_REJECTED,
                    f"plugin {impl.plugin_name} refused the session: {exc.reason}",
                    plugin=impl.plugin_name,
                    reason=exc.reason,
                ) from None
            except Exception as exc:
                log.exception("plugin %s failed in vfd_validate_session", impl.plugin_name)
                raise VfdError(
                    ErrorCode.PLUGIN_FAILED,
                    f"plugin {impl.plugin_name} failed checking the session: {describe(exc)}",
                    plugin=impl.plugin_name,
                ) from None

    async def container_spec(self, session: SessionView) -> list[tuple[str, ContainerContribution]]:
        """Each plugin's contribution to the container, with the plugin's name. A plugin that
        raises, or returns something else than a ContainerContribution, makes this raise
        ``plugin_failed`` naming it."""
        out: list[tuple[str, ContainerContribution]] = []
        for impl in self._impls("vfd_container_spec"):
            try:
                got = await self._call(impl, "vfd_container_spec", {"session": session})
            except Exception as exc:
                log.exception("plugin %s failed in vfd_container_spec", impl.plugin_name)
                raise VfdError(
                    ErrorCode.PLUGIN_FAILED,
                    f"plugin {impl.plugin_name} failed to contribute to the container: "
                    f"{describe(exc)}",
                    plugin=impl.plugin_name,
                ) from None
            if got is None:
                continue
            if not isinstance(got, ContainerContribution):
                raise VfdError(
                    ErrorCode.PLUGIN_FAILED,
                    f"plugin {impl.plugin_name}: vfd_container_spec returned "
                    f"{type(got).__name__}, not a ContainerContribution",
                    plugin=impl.plugin_name,
                )
            out.append((impl.plugin_name, got))
        return out

    async def before_start(self, session: SessionView) -> None:
        """Every ``vfd_session_before_start``; raises :class:`Vetoed` on the first Reject. A
        plugin raising anything else vetoes too (fail closed), with its error as reason."""
        for impl in self._impls("vfd_session_before_start"):
            try:
                await self._call(impl, "vfd_session_before_start", {"session": session})
            except Reject as exc:
                raise Vetoed(impl.plugin_name, exc.reason) from None
            except Exception as exc:
                log.exception("plugin %s failed in vfd_session_before_start", impl.plugin_name)
                raise Vetoed(impl.plugin_name, f"the plugin failed: {describe(exc)}") from None

    async def before_app_launch(self, session: SessionView, app: AppView) -> None:
        """Every ``vfd_app_before_launch``; the first Reject raises ``app_rejected`` naming the
        plugin. A plugin raising anything else refuses too (fail closed), as
        ``plugin_failed``."""
        for impl in self._impls("vfd_app_before_launch"):
            try:
                await self._call(impl, "vfd_app_before_launch", {"session": session, "app": app})
            except Reject as exc:
                raise VfdError(
                    ErrorCode.APP_REJECTED,
                    f"plugin {impl.plugin_name} refused app {app.name!r}: {exc.reason}",
                    plugin=impl.plugin_name,
                    reason=exc.reason,
                    app=app.name,
                ) from None
            except Exception as exc:
                log.exception("plugin %s failed in vfd_app_before_launch", impl.plugin_name)
                raise VfdError(
                    ErrorCode.PLUGIN_FAILED,
                    f"plugin {impl.plugin_name} failed checking app {app.name!r}: {describe(exc)}",
                    plugin=impl.plugin_name,
                    app=app.name,
                ) from None

    async def notify(self, hook: str, **kwargs: Any) -> None:
        """Call notification hook ``hook`` on every plugin; an exception is logged with the
        plugin's name, counted in its listing, and goes no further."""
        for impl in self._impls(hook):
            try:
                await self._call(impl, hook, kwargs)
            except Exception as exc:
                log.error(
                    "plugin %s failed in %s (ignored): %s",
                    impl.plugin_name,
                    hook,
                    exc,
                    exc_info=exc,
                )
                record = self.loaded.records.get(impl.plugin_name)
                if record is not None:
                    record.calls_failed += 1
                    record.last_failure = {
                        "hook": hook,
                        "error": describe(exc),
                        "at": datetime.now(UTC).isoformat(),
                    }

    def notify_threadsafe(self, hook: str, **kwargs: Any) -> None:
        """:meth:`notify` from any thread (a service running in a worker thread): scheduled on
        the daemon's loop, not waited for. Before :meth:`start` (no loop known yet), the
        hooks run in the calling thread on a loop of their own."""
        loop = self._loop
        if loop is None or loop.is_closed():
            asyncio.run(self.notify(hook, **kwargs))
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._spawn(hook, kwargs)
        else:
            loop.call_soon_threadsafe(self._spawn, hook, kwargs)

    def _spawn(self, hook: str, kwargs: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self.notify(hook, **kwargs))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self) -> None:
        """Wait until the notifications scheduled by :meth:`notify_threadsafe` have run."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def scheduler(self, name: str, options: Mapping[str, Any] | None = None) -> Scheduler:
        """A new scheduler of the registered ``name`` (options: its plugin's section)."""
        try:
            plugin, spec = self.schedulers[name]
        except KeyError:
            known = ", ".join(sorted(self.schedulers)) or "none"
            raise VfdError(
                ErrorCode.PLUGIN_NOT_FOUND,
                f"no plugin registers a scheduler named {name!r} (registered: {known})",
                scheduler=name,
            ) from None
        return spec.factory(options if options is not None else self.config.plugins.get(plugin, {}))

    # ------------------------------------------------------------------ calling one hook

    def _impls(self, hook: str) -> list[HookImpl]:
        """The implementations of ``hook``, in pluggy's call order (tryfirst first, then the
        latest registered)."""
        caller: pluggy.HookCaller = getattr(self.pm.hook, hook)
        return list(reversed(caller.get_hookimpls()))

    async def _call(self, impl: HookImpl, hook: str, kwargs: Mapping[str, Any]) -> Any:
        """One implementation, with the keyword arguments it takes; awaited if it returns an
        awaitable; traced when ``[plugins] trace`` is on."""
        if not self.trace:
            return await _maybe(impl.function(**{k: kwargs[k] for k in impl.argnames}))
        began = time.perf_counter()
        outcome = "ok"
        try:
            return await _maybe(impl.function(**{k: kwargs[k] for k in impl.argnames}))
        except BaseException as exc:
            outcome = f"raised {describe(exc)}"
            raise
        finally:
            trace_log.info(
                "hook %s plugin %s: %.3f ms, %s",
                hook,
                impl.plugin_name,
                (time.perf_counter() - began) * 1000,
                outcome,
            )


NOT_DISCOVERED = "not discovered yet"


def _inventory_of(name: str, spec: AcceleratorSpec, accelerator: Accelerator) -> Inventory:
    """``accelerator.inventory()``, checked: its units must be of the spec's slots and of
    its devices; anything wrong, raised or returned, is an inventory of no devices saying
    so."""
    try:
        inventory = accelerator.inventory()
        if not isinstance(inventory, Inventory):
            raise TypeError(f"inventory() returned {type(inventory).__name__}, not an Inventory")
        slots = {s.name for s in spec.slots}
        ids = {d.id for d in inventory.devices}
        for unit in inventory.units:
            if unit.slot not in slots:
                raise ValueError(f"a unit of slot {unit.slot!r}, which {name} does not offer")
            if unit.device not in ids:
                raise ValueError(f"a unit of device {unit.device!r}, which it did not list")
    except Exception as exc:
        log.error("accelerator %s: discovery failed", name, exc_info=exc)
        return Inventory(status=f"discovery failed: {describe(exc)}")
    return inventory


async def _maybe(value: Any) -> Any:
    """``await value`` if it is awaitable (a hook implementation may be a coroutine)."""
    if inspect.isawaitable(value):
        return await value
    return value


def build_manager(
    config: Config,
    *,
    entry_points: Iterable[Any] | None = None,
    plugins: Iterable[tuple[str, object]] = (),
) -> Plugins:
    """The plugin manager of a daemon: vfd's hooks, and every plugin of the ``vfd``
    entry-point group not blocked by ``[plugins] block`` (``entry_points`` replaces those;
    ``plugins`` adds ``(name, object)`` pairs: ``vfd.plugins.testing`` builds a hermetic
    manager with ``entry_points=()``).

    Raises ``config_invalid`` when two plugins register one scheduler or app name (the daemon
    does not start; the message names both and how to block one).
    """
    loaded = loading.load(config.plugin_block, entry_points, plugins, trace=config.plugin_trace)
    return Plugins(config, loaded)
