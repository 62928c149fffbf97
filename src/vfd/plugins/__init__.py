"""vfd's plugin system: hook specifications, the records hooks take and return, and the plugin
manager (``vfd.plugins.manager``, built per daemon, never at import).

What a plugin author imports::

    from vfd.plugins import hookimpl, Reject, ContainerContribution

    @hookimpl
    def vfd_session_before_start(session):
        if session.image.startswith("forbidden/"):
            raise Reject("images from forbidden/ may not run here")

See ``docs/plugin-hooks.md`` for every hook and ``docs/plugins.md`` for packaging.
"""

from vfd.plugins.hookspecs import PROJECT, hookimpl, hookspec
from vfd.plugins.types import (
    Accelerator,
    AcceleratorSpec,
    Agent,
    Allotment,
    AppContext,
    AppLaunch,
    AppSpec,
    AppView,
    BindMount,
    ContainerContribution,
    Decision,
    DeviceInfo,
    DeviceRequest,
    FolderView,
    Inventory,
    MountView,
    PendingSession,
    Placement,
    Reject,
    Resources,
    Scheduler,
    SchedulerSpec,
    SessionRequest,
    SessionView,
    SlotSpec,
    SlotUnit,
    Snapshot,
    UserLimits,
    Verdict,
)

__all__ = [
    "PROJECT",
    "Accelerator",
    "AcceleratorSpec",
    "Agent",
    "Allotment",
    "AppContext",
    "AppLaunch",
    "AppSpec",
    "AppView",
    "BindMount",
    "ContainerContribution",
    "Decision",
    "DeviceInfo",
    "DeviceRequest",
    "FolderView",
    "Inventory",
    "MountView",
    "PendingSession",
    "Placement",
    "Reject",
    "Resources",
    "Scheduler",
    "SchedulerSpec",
    "SessionRequest",
    "SessionView",
    "SlotSpec",
    "SlotUnit",
    "Snapshot",
    "UserLimits",
    "Verdict",
    "hookimpl",
    "hookspec",
]
