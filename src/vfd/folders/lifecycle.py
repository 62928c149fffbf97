"""The folder status machine: which status may follow which, checked in one place.

    ready ──trash──▶ delete-pending ──purge──▶ delete-ongoing ──▶ delete-complete
      ▲                   │                          │
      └─────restore───────┘                          └──▶ delete-error ──retry purge──┐
    cloning ──▶ ready                                          ▲                       │
       │                                                       └── delete-ongoing ◀────┘
       └──▶ clone-error ──purge──▶ delete-ongoing

``delete-complete`` is final: the record stays for audit, the name is free again. A folder
becomes ``ready`` from ``cloning`` only when its copy completed; a failed or cancelled copy
leaves ``clone-error`` (never trashed, so never restored to ``ready``: only purged).
"""

from __future__ import annotations

from vfd.errors import ErrorCode, VfdError
from vfd.store.models import VFolderStatus as S

TRANSITIONS: dict[S, frozenset[S]] = {
    # usable; may be trashed
    S.READY: frozenset({S.DELETE_PENDING}),
    # being filled from another folder; ready once the copy completed, else clone-error
    S.CLONING: frozenset({S.READY, S.CLONE_ERROR}),
    # the copy failed or was cancelled: what it copied is purged
    S.CLONE_ERROR: frozenset({S.DELETE_ONGOING}),
    # in the trash; restorable, or purged
    S.DELETE_PENDING: frozenset({S.READY, S.DELETE_ONGOING}),
    # purge under way; ends complete or failed
    S.DELETE_ONGOING: frozenset({S.DELETE_COMPLETE, S.DELETE_ERROR}),
    # purge failed; may be retried
    S.DELETE_ERROR: frozenset({S.DELETE_ONGOING}),
    # purged; final
    S.DELETE_COMPLETE: frozenset(),
}

TRASHED = frozenset({S.DELETE_PENDING, S.DELETE_ONGOING, S.DELETE_ERROR})
"""Statuses listed as "in the trash"."""

LIVE = frozenset({S.READY, S.CLONING, S.CLONE_ERROR})
"""Statuses listed as folders (not in the trash)."""

PURGEABLE = frozenset({S.DELETE_PENDING, S.DELETE_ERROR, S.CLONE_ERROR})
"""Statuses a purge starts from."""


def check_transition(old: S, new: S, *, name: str | None = None) -> None:
    """Raise ``invalid_status`` unless a folder may go from ``old`` to ``new``."""
    if new not in TRANSITIONS[old]:
        what = f"folder {name!r}" if name is not None else "folder"
        raise VfdError(
            ErrorCode.INVALID_STATUS,
            f"{what} is {old.value}; it cannot become {new.value}",
            status=old.value,
            wanted=new.value,
        )
