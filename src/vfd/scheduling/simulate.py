"""A snapshot written as JSON, run through a scheduler: ``vfd admin scheduler simulate``.

The file (``docs/schedulers.md`` has an example)::

    {
      "group": "default",                       # optional, default "default"
      "now": "2026-12-01T08:00:00Z",            # optional
      "agents": [{"id": "node1", "cpu": 16, "memory": "64G",
                  "used_cpu": 2, "used_memory": "8G",          # optional, default 0
                  "group": "default", "alive": true,           # optional
                  "storage_hosts": ["shared", "node1-local"],  # optional, null = every host
                  "units": [{"slot": "cuda.device", "device": "GPU-0", "capacity": 1,
                             "used": 0, "numa": 0,             # optional
                             "near": {"GPU-1": 10}}]}],        # optional
      "pending": [{"name": "train", "user": "alice", "cpu": 4, "memory": "16G",
                   "created_at": "2026-12-01T07:59:00Z",       # optional: list order
                   "id": "…", "group": "default", "image": "python:3.12",
                   "lifetime": 3600, "storage_hosts": ["shared"],
                   "slots": {"cuda.device": 2}}],              # optional
      "allocations": {"alice": {"cpu": 4, "memory": "16G", "slots": {"cuda.device": 1}}},
      "running": {"alice": 1},
      "limits": {"alice": {"max_sessions": 2, "max_cpu": 8, "max_memory": "32G",
                           "max_slots": {"cuda.device": 4},
                           "allowed_images": ["python:*"], "allowed_groups": []}},
      "memo": {}
    }

Users are any names (``alice``, an email, a UUID); memory is bytes or a size (``16G``). Every
mistake is an ``invalid_argument`` error naming the JSON path (``$.pending[2].cpu``).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from vfd.cli.sizes import parse_size
from vfd.errors import ErrorCode, VfdError
from vfd.plugins.types import (
    NO_SLOTS,
    Agent,
    Decision,
    PendingSession,
    Resources,
    Scheduler,
    SlotUnit,
    Snapshot,
    UserLimits,
)
from vfd.scheduling import slots as slot_math

T = TypeVar("T")
_USERS = uuid.UUID("5f1c8a52-6c0e-4d0c-9a53-76666401d5a1")
_SESSIONS = uuid.UUID("5f1c8a52-6c0e-4d0c-9a53-76666401d5a2")
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class _Bad(Exception):
    def __init__(self, path: str, why: str) -> None:
        super().__init__(f"{path}: {why}")
        self.path = path
        self.why = why


@dataclass(frozen=True)
class Simulation:
    """A parsed snapshot and the names its ids stand for."""

    snapshot: Snapshot
    users: Mapping[uuid.UUID, str]
    sessions: Mapping[uuid.UUID, PendingSession]


def parse(document: Any, source: str = "input") -> Simulation:
    """The snapshot ``document`` (parsed JSON) describes; ``invalid_argument`` naming
    ``source`` and the JSON path of the first mistake."""
    try:
        return _parse(document)
    except _Bad as bad:
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT, f"{source}: {bad.path}: {bad.why}", path=bad.path
        ) from None


def _parse(doc: Any) -> Simulation:
    top = _object(
        doc, "$", {"group", "now", "agents", "pending", "allocations", "running", "limits", "memo"}
    )
    group = _get(top, "$", "group", _text, "default")
    now = _get(top, "$", "now", _time, _EPOCH + timedelta(days=1))
    users: dict[uuid.UUID, str] = {}

    def user_id(name: str) -> uuid.UUID:
        try:
            uid = uuid.UUID(name)
        except ValueError:
            uid = uuid.uuid5(_USERS, name)
        users.setdefault(uid, name)
        return uid

    agents = [
        _agent(item, f"$.agents[{i}]", group)
        for i, item in enumerate(_list(top.get("agents", []), "$.agents"))
    ]
    seen_agents: set[str] = set()
    for i, a in enumerate(agents):
        if a.id in seen_agents:
            raise _Bad(f"$.agents[{i}].id", f"agent {a.id!r} is listed twice")
        seen_agents.add(a.id)
    pending = []
    for i, item in enumerate(_list(top.get("pending", []), "$.pending")):
        pending.append(_pending(item, f"$.pending[{i}]", i, group, user_id))
    seen: dict[uuid.UUID, int] = {}
    for i, p in enumerate(pending):
        if p.id in seen:
            raise _Bad(
                f"$.pending[{i}]", f"session {p.name!r} has the id of $.pending[{seen[p.id]}]"
            )
        seen[p.id] = i
    allocations = {
        user_id(name): _resources(value, f"$.allocations.{name}")
        for name, value in _object(top.get("allocations", {}), "$.allocations").items()
    }
    running = {
        user_id(name): _count(value, f"$.running.{name}")
        for name, value in _object(top.get("running", {}), "$.running").items()
    }
    limits = {
        user_id(name): _limits(value, f"$.limits.{name}")
        for name, value in _object(top.get("limits", {}), "$.limits").items()
    }
    memo = _object(top.get("memo", {}), "$.memo")
    snapshot = Snapshot(
        group=group,
        pending=tuple(sorted(pending, key=lambda s: (s.created_at, s.id))),
        agents=tuple(agents),
        allocations=allocations,
        running=running,
        limits=limits,
        memo=memo,
        now=now,
    )
    return Simulation(snapshot, users, {p.id: p for p in pending})


def _agent(item: Any, path: str, group: str) -> Agent:
    obj = _object(
        item,
        path,
        {
            "id",
            "group",
            "cpu",
            "memory",
            "used_cpu",
            "used_memory",
            "alive",
            "storage_hosts",
            "units",
        },
    )
    hosts = obj.get("storage_hosts")
    units = tuple(
        _unit(u, f"{path}.units[{i}]")
        for i, u in enumerate(_list(obj.get("units", []), f"{path}.units"))
    )
    seen: set[tuple[str, str]] = set()
    for i, u in enumerate(units):
        if (u.slot, u.device) in seen:
            raise _Bad(f"{path}.units[{i}].device", f"device {u.device!r} is listed twice")
        seen.add((u.slot, u.device))
    return Agent(
        id=_need(obj, path, "id", _text),
        group=_get(obj, path, "group", _text, group),
        cpu=_need(obj, path, "cpu", _cpu),
        memory=_need(obj, path, "memory", _memory),
        used_cpu=_get(obj, path, "used_cpu", _cpu, 0.0),
        used_memory=_get(obj, path, "used_memory", _memory, 0),
        alive=_get(obj, path, "alive", _bool, True),
        storage_hosts=None if hosts is None else frozenset(_texts(hosts, f"{path}.storage_hosts")),
        units=units,
    )


def _unit(item: Any, path: str) -> SlotUnit:
    obj = _object(item, path, {"slot", "device", "capacity", "used", "numa", "near"})
    capacity = _need(obj, path, "capacity", _cpu)
    used = _get(obj, path, "used", _cpu, 0.0)
    if used > capacity:
        raise _Bad(f"{path}.used", f"{used:g} used of a device worth {capacity:g}")
    near = _object(obj.get("near", {}), f"{path}.near")
    return SlotUnit(
        slot=_need(obj, path, "slot", _text),
        device=_need(obj, path, "device", _text),
        capacity=capacity,
        used=used,
        numa=_get(obj, path, "numa", _count, None),
        near={k: _count(v, f"{path}.near.{k}") for k, v in near.items()},
    )


def _slots(value: Any, path: str) -> dict[str, float]:
    """``{slot: amount}``, amounts > 0."""
    out: dict[str, float] = {}
    for name, amount in _object(value, path).items():
        got = _cpu(amount, f"{path}.{name}")
        if got <= 0:
            raise _Bad(f"{path}.{name}", f"must be a number > 0, not {amount!r}")
        out[name] = got
    return out


def _pending(
    item: Any, path: str, position: int, group: str, user_id: Callable[[str], uuid.UUID]
) -> PendingSession:
    obj = _object(
        item,
        path,
        {
            "id",
            "name",
            "user",
            "created_at",
            "cpu",
            "memory",
            "group",
            "image",
            "project",
            "lifetime",
            "storage_hosts",
            "slots",
        },
    )
    name = _need(obj, path, "name", _text)
    raw_id = _get(obj, path, "id", _text, name)
    try:
        sid = uuid.UUID(raw_id)
    except ValueError:
        sid = uuid.uuid5(_SESSIONS, raw_id)
    project = _get(obj, path, "project", _text, None)
    lifetime = obj.get("lifetime")
    return PendingSession(
        id=sid,
        user_id=user_id(_need(obj, path, "user", _text)),
        name=name,
        created_at=_get(obj, path, "created_at", _time, _EPOCH + timedelta(seconds=position)),
        cpu=_need(obj, path, "cpu", _cpu),
        memory=_get(obj, path, "memory", _memory, 0),
        group=_get(obj, path, "group", _text, group),
        image=_get(obj, path, "image", _text, ""),
        project_id=None if project is None else uuid.uuid5(_USERS, "project:" + project),
        lifetime=None if lifetime is None else _cpu(lifetime, f"{path}.lifetime"),
        storage_hosts=tuple(_texts(obj.get("storage_hosts", []), f"{path}.storage_hosts")),
        slots=_slots(obj["slots"], f"{path}.slots") if obj.get("slots") else NO_SLOTS,
    )


def _resources(item: Any, path: str) -> Resources:
    obj = _object(item, path, {"cpu", "memory", "slots"})
    return Resources(
        _get(obj, path, "cpu", _cpu, 0.0),
        _get(obj, path, "memory", _memory, 0),
        _slots(obj["slots"], f"{path}.slots") if obj.get("slots") else NO_SLOTS,
    )


def _limits(item: Any, path: str) -> UserLimits:
    obj = _object(
        item,
        path,
        {"max_sessions", "max_cpu", "max_memory", "max_slots", "allowed_images", "allowed_groups"},
    )
    return UserLimits(
        max_sessions=_get(obj, path, "max_sessions", _count, 0),
        max_cpu=_get(obj, path, "max_cpu", _cpu, 0.0),
        max_memory=_get(obj, path, "max_memory", _memory, 0),
        max_slots=_slots(obj["max_slots"], f"{path}.max_slots") if obj.get("max_slots") else {},
        allowed_images=tuple(_texts(obj.get("allowed_images", []), f"{path}.allowed_images")),
        allowed_groups=tuple(_texts(obj.get("allowed_groups", []), f"{path}.allowed_groups")),
    )


# ------------------------------------------------------------------ one value


def _need(obj: Mapping[str, Any], path: str, key: str, kind: Callable[[Any, str], T]) -> T:
    if key not in obj:
        raise _Bad(f"{path}.{key}", "missing")
    return kind(obj[key], f"{path}.{key}")


def _get(
    obj: Mapping[str, Any], path: str, key: str, kind: Callable[[Any, str], T], default: T
) -> T:
    if key not in obj or obj[key] is None:
        return default
    return kind(obj[key], f"{path}.{key}")


def _object(value: Any, path: str, known: set[str] | None = None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Bad(path, f"must be an object, not {_kind(value)}")
    if known is not None:
        unknown = sorted(set(value) - known)
        if unknown:
            raise _Bad(f"{path}.{unknown[0]}", f"unknown key (known: {', '.join(sorted(known))})")
    return value


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise _Bad(path, f"must be a list, not {_kind(value)}")
    return value


def _text(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise _Bad(path, f"must be a non-empty string, not {_kind(value)}")
    return value


def _texts(value: Any, path: str) -> list[str]:
    return [_text(v, f"{path}[{i}]") for i, v in enumerate(_list(value, path))]


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise _Bad(path, f"must be true or false, not {_kind(value)}")
    return value


def _cpu(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad(path, f"must be a number, not {_kind(value)}")
    if not math.isfinite(value) or value < 0:
        raise _Bad(path, f"must be a finite number >= 0, not {value!r}")
    return float(value)


def _count(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Bad(path, f"must be a whole number >= 0, not {value!r}")
    return value


def _memory(value: Any, path: str) -> int:
    if isinstance(value, str):
        try:
            return parse_size(value)
        except VfdError as exc:
            raise _Bad(path, exc.message) from None
    return _count(value, path)


def _time(value: Any, path: str) -> datetime:
    if not isinstance(value, str):
        raise _Bad(path, f"must be an ISO 8601 time, not {_kind(value)}")
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise _Bad(path, f"{value!r} is not an ISO 8601 time (e.g. 2026-12-01T08:00:00Z)") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"the string {value!r}" if value else "an empty string"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return repr(value)


# ------------------------------------------------------------------ running it


def run(scheduler: Scheduler, simulation: Simulation) -> Decision:
    """``scheduler``'s decision on the snapshot, checked: every placement names a pending
    session once and an agent of the snapshot (a broken plugin is reported, not believed)."""
    decision = scheduler.decide(simulation.snapshot)
    agents = {a.id for a in simulation.snapshot.agents}
    seen: set[uuid.UUID] = set()
    for p in decision.place:
        if p.session_id not in simulation.sessions or p.session_id in seen or p.agent not in agents:
            raise VfdError(
                ErrorCode.INTERNAL,
                f"the scheduler placed {p.session_id} on {p.agent!r}: not a pending session "
                "of the snapshot, placed twice, or not one of its agents",
            )
        seen.add(p.session_id)
    return decision


def report(simulation: Simulation, decision: Decision, scheduler: str) -> dict[str, Any]:
    """The decision as JSON: placements and every waiting session's verdicts, by name. A
    placed session asking slots gets its ``slots`` and ``allocation``: the devices the daemon
    would give it, the placements taken in order (:func:`vfd.scheduling.slots.allot_all`;
    ``null`` when they do not fit there: the daemon would not place it)."""
    sessions, users = simulation.sessions, simulation.users
    units = {a.id: a.units for a in simulation.snapshot.agents}
    placed = []
    for p in decision.place:
        s = sessions[p.session_id]
        entry: dict[str, Any] = {
            "session": s.name,
            "id": str(s.id),
            "user": users[s.user_id],
            "agent": p.agent,
            "cpu": s.cpu,
            "memory": s.memory,
        }
        if s.slots:
            got = slot_math.allot_all(s.slots, units[p.agent])
            if got is not None:
                units[p.agent] = slot_math.take(units[p.agent], got)
            entry["slots"] = dict(s.slots)
            entry["allocation"] = None if got is None else slot_math.allotments_json(got)
        placed.append(entry)
    waiting = []
    for s in simulation.snapshot.pending:
        if s.id in decision.waiting:
            verdicts = decision.waiting[s.id]
            waiting.append(
                {
                    "session": s.name,
                    "id": str(s.id),
                    "user": users[s.user_id],
                    "verdicts": [
                        {"name": v.name, "ok": v.ok, "reason": v.reason} for v in verdicts
                    ],
                }
            )
    done = {p.session_id for p in decision.place} | set(decision.waiting)
    unaccounted = [s.name for s in simulation.snapshot.pending if s.id not in done]
    return {
        "scheduler": scheduler,
        "group": simulation.snapshot.group,
        "placed": placed,
        "waiting": waiting,
        "unaccounted": unaccounted,
        "memo": dict(decision.memo),
    }
