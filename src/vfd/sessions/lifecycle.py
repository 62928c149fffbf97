"""The session status machine: which status may follow which, checked in one place.

    pending ──▶ scheduled ──▶ preparing ──▶ running ──▶ terminating ──▶ terminated
       │            │             │            │              │
       │            │             │            └──────────────┴──▶ terminated (exited by itself)
       └────────────┴─────────────┴──▶ cancelled        every live status ──▶ error

``cancelled`` is a session that never ran (destroyed while waiting, vetoed by a plugin before
its start); ``error`` one that could not start or whose container vanished. ``terminated``,
``cancelled`` and ``error`` are final.
"""

from __future__ import annotations

from vfd.enums import SessionStatus as S
from vfd.errors import ErrorCode, VfdError

TRANSITIONS: dict[S, frozenset[S]] = {
    # waiting for the scheduler; may be destroyed
    S.PENDING: frozenset({S.SCHEDULED, S.CANCELLED, S.ERROR}),
    # placed; its node prepares it next (back to pending if its node gives it up)
    S.SCHEDULED: frozenset({S.PREPARING, S.PENDING, S.CANCELLED, S.ERROR}),
    # mounts and container being made; a plugin may veto its start
    S.PREPARING: frozenset({S.RUNNING, S.CANCELLED, S.ERROR}),
    # its container runs; it ends by itself or is asked to stop
    S.RUNNING: frozenset({S.TERMINATING, S.TERMINATED, S.ERROR}),
    # being stopped
    S.TERMINATING: frozenset({S.TERMINATED, S.ERROR}),
    S.TERMINATED: frozenset(),
    S.CANCELLED: frozenset(),
    S.ERROR: frozenset(),
}

FINAL = frozenset({S.TERMINATED, S.CANCELLED, S.ERROR})
"""Statuses a session never leaves."""

LIVE = frozenset(set(S) - FINAL)
"""Statuses of sessions that hold a name, resources or mounts."""

WAITING = frozenset({S.PENDING, S.SCHEDULED})
"""Statuses of sessions whose container was not made yet."""


def check_transition(old: S, new: S, *, name: str | None = None) -> None:
    """Raise ``invalid_status`` unless a session may go from ``old`` to ``new``."""
    if new not in TRANSITIONS[old]:
        what = f"session {name!r}" if name is not None else "session"
        raise VfdError(
            ErrorCode.INVALID_STATUS,
            f"{what} is {old.value}; it cannot become {new.value}",
            status=old.value,
            wanted=new.value,
        )
