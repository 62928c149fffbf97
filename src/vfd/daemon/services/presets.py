"""Session presets: named sizes (cpu, memory, accelerator slots) that ``vfd run --preset NAME``
asks for.

Administrators make and delete them; every user may list them. A session keeps the cpu and
memory it was created with: deleting a preset changes no session.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from sqlmodel import Session, col, select

from vfd.daemon.services import audit, session_slots
from vfd.daemon.services.context import Caller, Daemon
from vfd.errors import ErrorCode, VfdError
from vfd.store.models import SessionPreset

PRESET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MIN_CPU = 0.01
MIN_MEMORY = 6 * 2**20


def find_preset(session: Session, name: str) -> SessionPreset:
    row = session.get(SessionPreset, name)
    if row is None:
        raise VfdError(
            ErrorCode.PRESET_NOT_FOUND,
            f"no session preset {name!r} (`vfd admin preset list` shows them)",
            preset=name,
        )
    return row


def preset_json(row: SessionPreset) -> dict[str, Any]:
    return {"name": row.name, "cpu": row.cpu, "memory": row.memory, "slots": dict(row.slots or {})}


def create_preset(
    daemon: Daemon,
    caller: Caller,
    *,
    name: str,
    cpu: float,
    memory: int = 0,
    slots: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """``POST /v1/admin/presets``: cpu at least 0.01; memory 0 (no limit) or at least 6 MiB
    (docker's smallest limit); slots known to this daemon (``session_slots.check``)."""
    caller.require_admin()
    if not PRESET_NAME.fullmatch(name):
        raise VfdError(
            ErrorCode.INVALID_NAME,
            f"{name!r} is no preset name: 1-64 letters, digits, '.', '_' or '-', starting with "
            "a letter or digit",
            field="name",
            name=name,
        )
    if not (math.isfinite(cpu) and cpu >= MIN_CPU):
        raise VfdError(ErrorCode.INVALID_ARGUMENT, f"cpu must be at least {MIN_CPU:g}", field="cpu")
    if memory != 0 and memory < MIN_MEMORY:
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT,
            "memory must be 0 (no limit) or at least 6 MiB (docker's smallest limit)",
            field="memory",
        )
    checked = session_slots.check(slots, session_slots.known(daemon))
    with daemon.session() as session:
        if session.get(SessionPreset, name) is not None:
            raise VfdError(ErrorCode.PRESET_EXISTS, f"preset {name!r} exists", preset=name)
        row = SessionPreset(name=name, cpu=cpu, memory=memory, slots=checked)
        session.add(row)
        audit.record(session, caller, "preset.create", name, cpu=cpu, memory=memory, slots=checked)
        return preset_json(row)


def list_presets(daemon: Daemon, caller: Caller) -> dict[str, Any]:
    """``GET /v1/presets``: every preset (any user may look)."""
    with daemon.session() as session:
        rows = session.exec(select(SessionPreset).order_by(col(SessionPreset.name))).all()
        return {"presets": [preset_json(p) for p in rows]}


def delete_preset(daemon: Daemon, caller: Caller, name: str) -> dict[str, Any]:
    """``DELETE /v1/admin/presets/{name}``."""
    caller.require_admin()
    with daemon.session() as session:
        row = find_preset(session, name)
        body = preset_json(row)
        session.delete(row)
        audit.record(session, caller, "preset.delete", name)
        return body
