"""The enumerations shared by the store, the API and the CLI: one definition each.

Kept apart from ``vfd.store.models`` so the CLI can use them without importing SQLModel.
"""

from __future__ import annotations

import enum


class UserRole(enum.StrEnum):
    ADMIN = "admin"
    USER = "user"


class UserStatus(enum.StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"  # deactivated: may not call the API; folders are kept


class UsageMode(enum.StrEnum):
    GENERAL = "general"
    MODEL = "model"
    DATA = "data"


class Permission(enum.StrEnum):
    """Folder permission, ordered ``ro`` < ``rw`` < ``wd``. ``wd`` may delete/rename the folder."""

    RO = "ro"
    RW = "rw"
    WD = "wd"

    @property
    def rank(self) -> int:
        return {"ro": 0, "rw": 1, "wd": 2}[self.value]

    def allows(self, needed: Permission) -> bool:
        return self.rank >= needed.rank


class Ownership(enum.StrEnum):
    USER = "user"
    PROJECT = "project"


class VFolderStatus(enum.StrEnum):
    """A folder's life; ``vfd.folders.lifecycle.check_transition`` is the one gate."""

    READY = "ready"  # usable, attached to the mount
    CLONING = "cloning"  # being filled from another folder (by mountd); not attached yet
    CLONE_ERROR = "clone-error"  # the clone failed or was cancelled; purge it (status_reason)
    DELETE_PENDING = "delete-pending"  # in the trash: detached, restorable
    DELETE_ONGOING = "delete-ongoing"  # purge under way
    DELETE_COMPLETE = "delete-complete"  # purged; the record stays for audit, the name is free
    DELETE_ERROR = "delete-error"  # purge failed; may be retried


class InvitationState(enum.StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    CANCELED = "canceled"


class SessionStatus(enum.StrEnum):
    """A compute session's life; ``vfd.sessions.lifecycle.check_transition`` is the one gate."""

    PENDING = "pending"  # stored, waiting for the scheduler to place it
    SCHEDULED = "scheduled"  # placed on a node; its resources are held
    PREPARING = "preparing"  # mounts, dotfiles and the container spec are being made
    RUNNING = "running"  # its container runs
    TERMINATING = "terminating"  # asked to stop; its container is being stopped
    TERMINATED = "terminated"  # its container ended (exit code recorded); final
    CANCELLED = "cancelled"  # never ran: destroyed while waiting, or vetoed by a plugin; final
    ERROR = "error"  # could not start, or its container vanished; final


class DotfileScope(enum.StrEnum):
    """Whose sessions a dotfile is written into."""

    USER = "user"  # the owner's sessions
    PROJECT = "project"  # the sessions of the project's members
    CLUSTER = "cluster"  # every session


class SessionKind(enum.StrEnum):
    """What a session runs."""

    COMPUTE = "compute"  # a container, placed by the scheduler; holds cpu and memory
    STORAGE = "storage"  # no container: apps over folder views; holds no compute resources


class AppStatus(enum.StrEnum):
    """An app of a session (``sessionapp``): its process, or its proxied service."""

    STARTING = "starting"  # launched; not serving yet
    RUNNING = "running"  # serving at its endpoint
    STOPPED = "stopped"  # ended: stopped with its session, idle, or it exited; final
    FAILED = "failed"  # could not start, or died with an error; final
