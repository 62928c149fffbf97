"""Every hook vfd calls, with its contract. ``docs/plugin-hooks.md`` has a section per hook;
``tests/plugins/test_hookspecs_documented.py`` fails when one is missing there or has no
``test_hook_<name>``.

Hooks are called with keyword arguments on the daemon's event loop. An implementation may
return an awaitable instead of its value; vfd awaits it. Notification hooks (everything but
the registration and veto hooks) have their exceptions logged with the plugin's name and
isolated: the session or folder goes on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

import pluggy

from vfd.plugins.types import (
    AcceleratorSpec,
    AppSpec,
    AppView,
    ContainerContribution,
    FolderView,
    SchedulerSpec,
    SessionRequest,
    SessionView,
)

PROJECT = "vfd"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def vfd_configure(sections: Mapping[str, Mapping[str, Any]]) -> Awaitable[None] | None:
    """Called once when the daemon starts (before it serves, before any other hook but
    the registration hooks (``vfd_register_schedulers``, ``vfd_register_apps``,
    ``vfd_register_accelerators``), collected as the plugin loads),
    with every ``[plugins.NAME]`` table of the config; a plugin reads its own section. Raising
    marks the plugin failed (listed by ``vfd plugins``) and unregisters it."""


@hookspec
def vfd_register_schedulers() -> Sequence[SchedulerSpec]:
    """The schedulers this plugin offers. Called once, as the plugin loads (not awaited:
    return the list). A malformed answer fails the plugin; two plugins offering one name is an
    error naming both, and the daemon does not start until one is blocked."""
    raise NotImplementedError


@hookspec
def vfd_register_apps() -> Sequence[AppSpec]:
    """The apps this plugin offers (servers the daemon runs over a session's folders, as its
    user, confined to them). Called once, as the plugin loads (not awaited: return the list).
    A malformed answer fails the plugin; a name that breaks the rule of service names fails
    it too; two plugins offering one name is an error naming both, and the daemon does not
    start until one is blocked."""
    raise NotImplementedError


@hookspec
def vfd_register_accelerators() -> Sequence[AcceleratorSpec]:
    """The accelerators this plugin offers: each a name, the slots sessions ask for
    (``cuda.device``, ``cuda.shares``) and a factory of the object that finds the node's
    devices. Called once, as the plugin loads (not awaited: return the list). A malformed
    answer fails the plugin (a slot not named ``ACCELERATOR.KIND``, a quantum that is not
    positive); an accelerator or slot name offered by two plugins is an error naming both, and
    the daemon does not start until one is blocked. The devices are found once, when the
    daemon starts (``Accelerator.inventory()`` in a worker thread); what a session's container
    gets for the devices it holds is the plugin's ``vfd_container_spec``
    (``session.allocation``)."""
    raise NotImplementedError


@hookspec
def vfd_validate_session(request: SessionRequest) -> Awaitable[None] | None:
    """Check a session request before it is stored. Raise :class:`~vfd.plugins.types.Reject`
    to refuse it: the request is answered ``400 session_rejected`` with the reason and the
    plugin's name, and nothing is stored."""


@hookspec
def vfd_container_spec(
    session: SessionView,
) -> ContainerContribution | Awaitable[ContainerContribution | None] | None:
    """What this plugin adds to the session's container (env, mounts, labels, device
    requests, resource limits), while the session is ``preparing``. Contributions of all
    plugins are merged; a clash between two is an error naming both (the session ends
    ``error``). Raising ends the session ``error`` with the plugin's name."""


@hookspec
def vfd_session_before_start(session: SessionView) -> Awaitable[None] | None:
    """Called when the container is about to start. Raise
    :class:`~vfd.plugins.types.Reject` to veto: the session ends ``cancelled`` with the reason
    and the plugin's name recorded (``vfd session info``)."""


@hookspec
def vfd_session_started(session: SessionView) -> Awaitable[None] | None:
    """Notification: the session is ``running`` (its container started)."""


@hookspec
def vfd_session_before_stop(session: SessionView) -> Awaitable[None] | None:
    """Notification: the session is asked to stop (``terminating``); its container still
    runs."""


@hookspec
def vfd_session_stopped(session: SessionView) -> Awaitable[None] | None:
    """Notification: the session's container ended (``terminated``; ``exit_code`` set)."""


@hookspec
def vfd_session_failed(session: SessionView, reason: str) -> Awaitable[None] | None:
    """Notification: the session ended ``error`` (could not start, or its container
    vanished)."""


@hookspec
def vfd_folder_created(folder: FolderView) -> Awaitable[None] | None:
    """Notification: a folder was created (or a clone of one completed)."""


@hookspec
def vfd_folder_trashed(folder: FolderView) -> Awaitable[None] | None:
    """Notification: a folder was moved to the trash."""


@hookspec
def vfd_folder_restored(folder: FolderView) -> Awaitable[None] | None:
    """Notification: a folder was restored from the trash."""


@hookspec
def vfd_folder_purged(folder: FolderView) -> Awaitable[None] | None:
    """Notification: a folder's data was deleted for good."""


@hookspec
def vfd_app_before_launch(session: SessionView, app: AppView) -> Awaitable[None] | None:
    """Called before an app of ``session`` starts (``app.status`` is ``starting``; no process
    runs, no port is held yet). Raise :class:`~vfd.plugins.types.Reject` to veto: the launch
    is answered ``400 app_rejected`` with the reason and the plugin's name; a storage-only
    session made for the app is not kept."""


@hookspec
def vfd_app_launched(session: SessionView, app: AppView) -> Awaitable[None] | None:
    """Notification: an app of ``session`` serves (``app.status`` ``running``, its
    ``endpoint`` set)."""


@hookspec
def vfd_app_stopped(session: SessionView, app: AppView) -> Awaitable[None] | None:
    """Notification: an app of ``session`` ended (``stopped`` or ``failed``, ``app.reason``
    says why): stopped with its session, idle, or its process exited."""
