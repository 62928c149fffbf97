"""Building snapshots for scheduler tests: sessions numbered in submit order, users and agents
by name."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from vfd.plugins.types import Agent, PendingSession, Resources, Snapshot, UserLimits

GiB = 2**30
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def user(name: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_DNS, f"user.{name}")


def session(n: int, owner: str, cpu: float, memory: int, **more: Any) -> PendingSession:
    """Session ``s<n>`` of ``owner``, asked for ``n`` seconds after the epoch."""
    return PendingSession(
        id=uuid.UUID(int=n + 1),
        user_id=user(owner),
        name=f"s{n}",
        created_at=EPOCH + timedelta(seconds=n),
        cpu=cpu,
        memory=memory,
        **more,
    )


def agent(name: str, cpu: float, memory: int, **more: Any) -> Agent:
    fields: dict[str, Any] = {"group": "default", "used_cpu": 0.0, "used_memory": 0}
    fields.update(more)
    return Agent(id=name, cpu=cpu, memory=memory, **fields)


def snapshot(
    pending: Iterable[PendingSession],
    agents: Iterable[Agent],
    *,
    allocations: Mapping[str, Resources] | None = None,
    running: Mapping[str, int] | None = None,
    limits: Mapping[str, UserLimits] | None = None,
    memo: Mapping[str, Any] | None = None,
) -> Snapshot:
    return Snapshot(
        group="default",
        pending=tuple(sorted(pending, key=lambda s: (s.created_at, s.id))),
        agents=tuple(agents),
        allocations={user(k): v for k, v in (allocations or {}).items()},
        running={user(k): v for k, v in (running or {}).items()},
        limits={user(k): v for k, v in (limits or {}).items()},
        memo=dict(memo or {}),
        now=EPOCH + timedelta(days=1),
    )


def names(snap: Snapshot, ids: Iterable[uuid.UUID]) -> list[str]:
    by_id = {s.id: s.name for s in snap.pending}
    return [by_id[i] for i in ids]
