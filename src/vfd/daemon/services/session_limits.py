"""What a session request may ask for: its preset and group resolved, and the absolute limits
of the user's resource policy checked, before anything is stored.

A request above an absolute limit could never start, whatever else ends, so it is refused at
once with ``policy_violation`` (``details``: ``limit``, ``asked``, ``allowed``):

- ``allowed_groups`` / ``group_access``: a group the policy or the group's access rows do not
  let the user use;
- ``allowed_images``: an image no pattern of the policy matches;
- ``max_session_cpu`` / ``max_session_memory``: one session larger than all the user's
  sessions may be together (a session with no memory limit is unbounded, so it is refused
  under a memory limit);
- ``max_lifetime``: a lifetime longer than the policy allows;
- ``max_slots``: one session asking more of an accelerator slot than all the user's sessions
  may hold together (``limit`` is ``max_slots.<slot>``).

A request within them that does not fit now — the user's other sessions, ``max_sessions``,
the group's free capacity — waits in the queue, and the scheduler says why.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
from collections.abc import Mapping
from typing import Any

from sqlmodel import Session

from vfd.daemon.services.context import Daemon
from vfd.daemon.services.policies import SessionLimits, session_limits
from vfd.daemon.services.presets import find_preset
from vfd.daemon.services.resource_groups import find_group, may_use
from vfd.errors import ErrorCode, VfdError
from vfd.store.models import ResourcePolicy, User

DEFAULT_CPU = 1.0


@dataclasses.dataclass(frozen=True)
class Sized:
    """A request's resources once its preset and defaults are applied."""

    group: str
    cpu: float
    memory: int
    lifetime: float | None
    slots: Mapping[str, float] = dataclasses.field(default_factory=dict)
    """Accelerator slots (the request's, else the preset's)."""


def check_lifetime(lifetime: float | None) -> None:
    if lifetime is not None and not (math.isfinite(lifetime) and lifetime > 0):
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT,
            "lifetime must be a positive number of seconds",
            field="lifetime",
        )


def resolve(
    daemon: Daemon,
    session: Session,
    user: User,
    *,
    group: str | None,
    preset: str | None,
    cpu: float | None,
    memory: int | None,
    lifetime: float | None,
    slots: Mapping[str, float] | None = None,
) -> Sized:
    """The group (default ``[sessions] group``) and size (explicit cpu/memory, else the
    preset's, else 1 cpu and no memory limit) and slots (explicit, else the preset's) of a
    request; ``group_not_found`` /
    ``preset_not_found`` for unknown names."""
    check_lifetime(lifetime)
    name = group or daemon.config.sessions.group
    find_group(session, name)
    if preset is not None:
        row = find_preset(session, preset)
        cpu = row.cpu if cpu is None else cpu
        memory = row.memory if memory is None else memory
        slots = slots if slots else dict(row.slots or {})
    return Sized(
        group=name,
        cpu=DEFAULT_CPU if cpu is None else cpu,
        memory=0 if memory is None else memory,
        lifetime=lifetime,
        slots=dict(slots or {}),
    )


def _violation(message: str, limit: str, asked: Any, allowed: Any, policy: str) -> VfdError:
    return VfdError(
        ErrorCode.POLICY_VIOLATION,
        message,
        limit=limit,
        asked=asked,
        allowed=allowed,
        policy=policy,
    )


def check_policy(session: Session, user: User, image: str, sized: Sized) -> None:
    """Refuse (``policy_violation``) a request above an absolute limit of ``user``'s policy
    or outside the group's access (see the module's docstring)."""
    if not may_use(session, user, sized.group):
        raise _violation(
            f"resource group {sized.group!r} is not open to {user.email} (an administrator "
            "allows users with `vfd admin resource-group update --allow-user`)",
            "group_access",
            sized.group,
            None,
            "",
        )
    _check_max_slots(session, user, sized)
    limits = session_limits(session, user)
    if limits == SessionLimits():
        return
    policy = user.resource_policy or ""
    where = f"resource policy {policy!r}"
    if limits.allowed_groups and sized.group not in limits.allowed_groups:
        raise _violation(
            f"{where} allows resource groups {', '.join(limits.allowed_groups)}, not "
            f"{sized.group!r}",
            "allowed_groups",
            sized.group,
            list(limits.allowed_groups),
            policy,
        )
    if limits.allowed_images and not any(
        fnmatch.fnmatchcase(image, pattern) for pattern in limits.allowed_images
    ):
        raise _violation(
            f"{where} allows images matching {', '.join(limits.allowed_images)}; "
            f"{image!r} matches none",
            "allowed_images",
            image,
            list(limits.allowed_images),
            policy,
        )
    if limits.max_session_cpu and sized.cpu > limits.max_session_cpu + 1e-9:
        raise _violation(
            f"{sized.cpu:g} cpu asked, but {where} allows {limits.max_session_cpu:g} cpu for "
            "all your sessions together",
            "max_session_cpu",
            sized.cpu,
            limits.max_session_cpu,
            policy,
        )
    if limits.max_session_memory and not 0 < sized.memory <= limits.max_session_memory:
        mib = limits.max_session_memory / 2**20
        asked = "no memory limit" if not sized.memory else f"{sized.memory / 2**20:.0f} MiB"
        raise _violation(
            f"{asked} asked, but {where} allows {mib:.0f} MiB for all your sessions together"
            + (" (give --mem)" if not sized.memory else ""),
            "max_session_memory",
            sized.memory,
            limits.max_session_memory,
            policy,
        )
    if limits.max_lifetime and sized.lifetime is not None and sized.lifetime > limits.max_lifetime:
        raise _violation(
            f"a lifetime of {sized.lifetime:g} s asked, but {where} allows at most "
            f"{limits.max_lifetime:g} s",
            "max_lifetime",
            sized.lifetime,
            limits.max_lifetime,
            policy,
        )


def _check_max_slots(session: Session, user: User, sized: Sized) -> None:
    """Refuse a request of more of a slot than ``user``'s policy's ``max_slots`` allows all
    the user's sessions together."""
    if not sized.slots or user.resource_policy is None:
        return
    row = session.get(ResourcePolicy, user.resource_policy)
    if row is None:
        return
    caps = row.max_slots or {}
    for name, amount in sorted(sized.slots.items()):
        allowed = caps.get(name)
        if allowed and amount > allowed + 1e-9:
            raise _violation(
                f"{amount:g} {name} asked, but resource policy {row.name!r} allows "
                f"{allowed:g} {name} for all your sessions together",
                f"max_slots.{name}",
                amount,
                allowed,
                row.name,
            )
