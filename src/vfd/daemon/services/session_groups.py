"""The supplementary groups a user's processes get over folders: sessions and the file API.

A folder shared ``rw`` has a group (``vfd.daemon.services.folder_groups``) and mountd keeps
every entry in it with ``g = u`` (``vfd.fuse.groups``), so holding that gid is what lets each
``rw`` member change what the others wrote, whatever their uids. A user gets the group of
each folder they mount and still reach, and no other: the group of a folder they were removed
from is gone from their next session.

Users who may only read a folder get its group too, so that they can read what a member
wrote with an owner-only umask (``0600`` becomes ``0660``). The group gives them no write:
their mounts and the file API use the folder's ``ro/`` view, where mountd refuses every
change with EROFS before any permission bit is looked at (docs/storage.md "Folders shared
rw").
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Protocol

from sqlmodel import Session

from vfd.daemon.services import access
from vfd.daemon.services.folder_groups import group_of
from vfd.store.models import User


class MountLike(Protocol):
    """What a planned or stored session mount carries that matters here."""

    @property
    def vfolder_id(self) -> uuid.UUID: ...


def folder_groups(session: Session, user: User, folder_ids: Iterable[uuid.UUID]) -> list[int]:
    """The groups of those of ``folder_ids`` that ``user`` reaches now, sorted, without the
    user's own gid."""
    wanted = set(folder_ids)
    if not wanted:
        return []
    gids: set[int] = set()
    for hit in access.accessible(session, user):
        if hit.folder.id in wanted:
            gid = group_of(session, hit.folder)
            if gid is not None:
                gids.add(gid)
    gids.discard(user.gid)
    return sorted(gids)


def groups_for(session: Session, user: User, mounts: Sequence[MountLike]) -> list[int]:
    """The supplementary groups of a session of ``user`` with ``mounts``: the container's
    ``group_add`` (its primary group is the user's gid)."""
    return folder_groups(session, user, (m.vfolder_id for m in mounts))
