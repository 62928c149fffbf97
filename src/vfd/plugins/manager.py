"""The plugin manager of one daemon: built by :func:`build_manager`, never at import.

Built-in plugins (``vfd.plugins.builtin``) are registered exactly as third-party ones: through
the ``vfd`` entry-point group of the installed ``vfd`` distribution. A plugin that fails to
import or to configure is listed with its error and left out; one listed in ``[plugins]
block`` is never imported. The daemon calls hooks only through :class:`Plugins`, which awaits
implementations that return awaitables, attributes vetoes to their plugin, and isolates
notification hooks.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy

from vfd.config import Config
from vfd.errors import ErrorCode, VfdError
from vfd.plugins import hookspecs
from vfd.plugins.types import (
    ContainerContribution,
    Reject,
    Scheduler,
    SchedulerSpec,
    SessionRequest,
    SessionView,
)

log = logging.getLogger(__name__)


class Vetoed(Exception):
    """A plugin refused a session's start (``vfd_session_before_start`` raised Reject)."""

    def __init__(self, plugin: str, reason: str) -> None:
        super().__init__(f"{plugin}: {reason}")
        self.plugin = plugin
        self.reason = reason


@dataclass
class LoadFailure:
    """A plugin that could not be loaded, and why."""

    name: str
    distribution: str | None
    version: str | None
    error: str


@dataclass
class Plugins:
    """The hooks of one daemon's plugins, called the way vfd's contracts say."""

    pm: pluggy.PluginManager
    config: Config
    failures: list[LoadFailure] = field(default_factory=list)
    schedulers: dict[str, tuple[str, SchedulerSpec]] = field(default_factory=dict)
    """Scheduler name -> (plugin name, spec)."""

    async def validate_session(self, request: SessionRequest) -> None:
        """Every ``vfd_validate_session``; a Reject becomes ``session_rejected`` naming the
        plugin."""
        for impl in reversed(self.pm.hook.vfd_validate_session.get_hookimpls()):
            try:
                await _maybe(impl.function(request=request))
            except Reject as exc:
                raise VfdError(
                    ErrorCode.SESSION_REJECTED,
                    f"plugin {impl.plugin_name} refused the session: {exc.reason}",
                    plugin=impl.plugin_name,
                    reason=exc.reason,
                ) from None

    async def container_spec(self, session: SessionView) -> list[tuple[str, ContainerContribution]]:
        """Each plugin's contribution to the container, with the plugin's name. A plugin that
        raises makes this raise ``plugin_failed`` naming it."""
        out: list[tuple[str, ContainerContribution]] = []
        for impl in reversed(self.pm.hook.vfd_container_spec.get_hookimpls()):
            try:
                got = await _maybe(impl.function(session=session))
            except Exception as exc:
                raise VfdError(
                    ErrorCode.PLUGIN_FAILED,
                    f"plugin {impl.plugin_name} failed to contribute to the container: {exc}",
                    plugin=impl.plugin_name,
                ) from exc
            if got is not None:
                out.append((impl.plugin_name, got))
        return out

    async def before_start(self, session: SessionView) -> None:
        """Every ``vfd_session_before_start``; raises :class:`Vetoed` on the first Reject. A
        plugin raising anything else vetoes too (fail closed), with its error as reason."""
        for impl in reversed(self.pm.hook.vfd_session_before_start.get_hookimpls()):
            try:
                await _maybe(impl.function(session=session))
            except Reject as exc:
                raise Vetoed(impl.plugin_name, exc.reason) from None
            except Exception as exc:
                log.exception("plugin %s failed in vfd_session_before_start", impl.plugin_name)
                raise Vetoed(impl.plugin_name, f"the plugin failed: {exc}") from None

    async def notify(self, hook: str, **kwargs: Any) -> None:
        """Call notification hook ``hook`` on every plugin; an exception is logged with the
        plugin's name and goes no further."""
        caller = getattr(self.pm.hook, hook)
        for impl in reversed(caller.get_hookimpls()):
            try:
                await _maybe(impl.function(**{k: kwargs[k] for k in impl.argnames}))
            except Exception:
                log.exception("plugin %s failed in %s (ignored)", impl.plugin_name, hook)

    def scheduler(self, name: str, options: Mapping[str, Any] | None = None) -> Scheduler:
        """A new scheduler of the registered ``name``."""
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


async def _maybe(value: Any) -> Any:
    """``await value`` if it is awaitable (a hook implementation may be a coroutine)."""
    if inspect.isawaitable(value):
        return await value
    return value


def build_manager(config: Config) -> Plugins:
    """A plugin manager with vfd's hooks, the built-in plugins and every installed one.

    (First version: built-ins only; entry points, blocking, failures, trace and
    ``check_pending`` come next.)
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    plugins = Plugins(pm=pm, config=config)
    from vfd.plugins.builtin import fifo

    pm.register(fifo, name="fifo")
    for plugin_name, specs in _registrations(pm):
        for spec in specs:
            if spec.name in plugins.schedulers:
                other = plugins.schedulers[spec.name][0]
                raise VfdError(
                    ErrorCode.CONFIG_INVALID,
                    f"plugins {other} and {plugin_name} both register a scheduler named "
                    f"{spec.name!r}",
                    scheduler=spec.name,
                    plugins=[other, plugin_name],
                )
            plugins.schedulers[spec.name] = (plugin_name, spec)
    return plugins


def _registrations(pm: pluggy.PluginManager) -> list[tuple[str, list[SchedulerSpec]]]:
    out: list[tuple[str, list[SchedulerSpec]]] = []
    for impl in reversed(pm.hook.vfd_register_schedulers.get_hookimpls()):
        specs: Any = impl.function()
        out.append((impl.plugin_name, list(specs)))
    return out
