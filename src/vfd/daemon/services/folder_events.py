"""The ``vfd_folder_*`` notifications: what plugins see of a folder, sent after the change is
committed.

The folder services run in worker threads and the hooks on the daemon's loop, so a
notification is scheduled there (:meth:`vfd.plugins.manager.Plugins.notify_threadsafe`) and
not waited for: the request is answered whatever the plugins do, and a plugin that raises is
logged with its name and goes no further.
"""

from __future__ import annotations

from typing import Literal

from vfd.daemon.services.context import Daemon
from vfd.plugins.types import FolderView
from vfd.store.models import VFolder

FolderHook = Literal[
    "vfd_folder_created", "vfd_folder_trashed", "vfd_folder_restored", "vfd_folder_purged"
]


def folder_view(folder: VFolder) -> FolderView:
    """What plugins see of ``folder`` (its row as committed)."""
    owner = folder.user_id if folder.user_id is not None else folder.project_id
    assert owner is not None, f"folder {folder.id} has no owner"
    return FolderView(
        id=folder.id,
        name=folder.name,
        host=folder.host,
        ownership=folder.ownership.value,
        owner_id=owner,
        usage_mode=folder.usage_mode.value,
        status=folder.status.value,
    )


def announce(daemon: Daemon, hook: FolderHook, folder: VFolder) -> None:
    """Send ``hook`` with ``folder`` to every plugin (from a worker thread; not waited for)."""
    daemon.plugins.notify_threadsafe(hook, folder=folder_view(folder))
