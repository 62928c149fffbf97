"""Compute sessions as the API sees them: create, list, show, destroy.

A new session is checked in full before anything is stored — its fields, its group and
preset, the absolute limits of the user's resource policy (``session_limits``), the container
runtime, the node's capacity, the image, its mounts, every plugin's ``vfd_validate_session``
— then stored ``pending`` with its mounts and first event in one transaction, under the lock
that keeps session names unique among a user's live sessions; the scheduler loop
(``vfd.daemon.scheduler``) places and launches it. Destroying answers at once: a session that
waits is cancelled; one that is being prepared or runs is stopped by the launcher
(``vfd.daemon.launcher``), which records how it ended.

Blocking work (the store, docker) runs in the runtime's worker pools; the functions here that
are ``async`` only orchestrate.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session, col, select

from vfd.daemon import capacity, containers, runtime, scheduler
from vfd.daemon.runtime import Pool
from vfd.daemon.services import audit, session_limits, session_slots, session_state
from vfd.daemon.services.context import Caller, Daemon
from vfd.enums import SessionKind
from vfd.errors import ErrorCode, VfdError
from vfd.plugins.types import MountView, SessionRequest
from vfd.sessions.lifecycle import FINAL, LIVE, WAITING
from vfd.store.models import ComputeSession, SessionStatus, User, utcnow

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
NAME_MAX = 64
ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
IMAGE_MAX = 512
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_DOMAIN = rf"(?:{_LABEL}(?:\.{_LABEL})*(?::[0-9]+)?/)?"
IMAGE_RE = re.compile(
    _DOMAIN
    + _COMPONENT
    + rf"(?:/{_COMPONENT})*"
    + r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    + r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
)
"""An image reference as docker reads one (``[registry[:port]/]path[:tag][@digest]``, paths
in lower case), or an image id (``sha256:<hex>``, or its hex)."""
MIN_MEMORY = 6 * 2**20
"""docker's smallest memory limit."""
MIN_CPU = 0.01
"""docker's smallest cpu limit (``NanoCpus`` of 10^7)."""
RESERVED_ENV = ("HOME",)
RESERVED_ENV_PREFIX = "VFD_"


@dataclass(frozen=True)
class SessionAsk:
    """A session request as the API receives it (``POST /v1/sessions``)."""

    image: str
    command: list[str] = field(default_factory=list)
    name: str | None = None
    mounts: list[str] = field(default_factory=list)
    cpu: float | None = None
    """None: the preset's, else 1."""
    memory: int | None = None
    """None: the preset's, else 0 (no limit)."""
    env: dict[str, str] = field(default_factory=dict)
    auto_remove: bool = False
    group: str | None = None
    """None: ``[sessions] group``."""
    preset: str | None = None
    lifetime: float | None = None
    """Seconds it may run; None: as long as the policy allows."""
    slots: dict[str, float] = field(default_factory=dict)
    """Accelerator slots (``{"cuda.shares": 0.5}``); empty: the preset's, else none."""


def check_ask(ask: SessionAsk) -> None:
    """Refuse a request whose fields are wrong (``invalid_argument`` / ``invalid_name`` with
    ``details.field``), whatever the node."""
    image = ask.image
    if not image or len(image) > IMAGE_MAX or not IMAGE_RE.fullmatch(image):
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT,
            f"image: {image[:80]!r} is no image reference ([REGISTRY/]NAME[:TAG][@DIGEST], "
            f"NAME in lower case, at most {IMAGE_MAX} characters) or image id",
            field="image",
        )
    for arg in ask.command:
        if "\x00" in arg:
            raise VfdError(
                ErrorCode.INVALID_ARGUMENT, "command must not contain NUL", field="command"
            )
    if ask.name is not None:
        check_name(ask.name)
    for key, value in ask.env.items():
        if not ENV_KEY_RE.fullmatch(key):
            raise VfdError(
                ErrorCode.INVALID_ARGUMENT,
                f"env: {key!r} is no variable name (letters, digits and _, not starting with a "
                "digit)",
                field="env",
                key=key,
            )
        if key in RESERVED_ENV or key.startswith(RESERVED_ENV_PREFIX):
            raise VfdError(
                ErrorCode.INVALID_ARGUMENT,
                f"env: {key} is set by vfd (HOME and VFD_* cannot be given)",
                field="env",
                key=key,
            )
        if "\x00" in value:
            raise VfdError(ErrorCode.INVALID_ARGUMENT, f"env: {key}'s value holds NUL", field="env")
    if ask.cpu is not None or ask.memory is not None:
        check_size(1.0 if ask.cpu is None else ask.cpu, ask.memory or 0)
    session_limits.check_lifetime(ask.lifetime)


def check_size(cpu: float, memory: int) -> None:
    """Refuse (``invalid_argument``) a cpu below 0.01 or NaN, or a memory limit docker
    cannot set."""
    if not cpu >= MIN_CPU:  # also refuses NaN
        raise VfdError(ErrorCode.INVALID_ARGUMENT, f"cpu must be at least {MIN_CPU:g}", field="cpu")
    if memory != 0 and memory < MIN_MEMORY:
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT,
            "memory must be 0 (no limit) or at least 6 MiB (docker's smallest limit)",
            field="memory",
        )


def check_name(name: str) -> None:
    """A session name: 1 to 64 letters, digits, ``_``, ``.``, ``-``, starting with a letter or
    digit (``invalid_name``)."""
    if len(name) > NAME_MAX or not NAME_RE.fullmatch(name):
        raise VfdError(
            ErrorCode.INVALID_NAME,
            f"{name!r} is no session name: 1 to {NAME_MAX} letters, digits, '_', '.' or '-', "
            "starting with a letter or digit",
            field="name",
            name=name,
        )


def default_name(image: str) -> str:
    """``<image basename without tag or digest>-<4 hex>``: ``vfd-test/busybox:latest`` ->
    ``busybox-1a2b``."""
    base = image.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]
    base = re.sub(r"[^A-Za-z0-9_.-]", "-", base).lstrip("_.-") or "session"
    return f"{base[: NAME_MAX - 5]}-{secrets.token_hex(2)}"


async def create(daemon: Daemon, caller: Caller, ask: SessionAsk) -> dict[str, Any]:
    """Check ``ask`` in full and store it as a pending session of the caller; its Session
    JSON. Nothing is stored when any check refuses it."""
    check_ask(ask)
    specs = session_slots.known(daemon)
    ask = dataclasses.replace(ask, slots=session_slots.check(ask.slots, specs))
    live = runtime.current()
    sized = await live.run(Pool.STORE, _sized, daemon, caller.user, ask)
    # a preset's slots, checked again: the plugin offering one may be gone since
    sized = dataclasses.replace(sized, slots=session_slots.check(sized.slots, specs))
    reason = await containers.available(daemon)
    if reason is not None:
        raise VfdError(ErrorCode.RUNTIME_UNAVAILABLE, f"sessions cannot run: {reason}")
    await live.run(Pool.STORE, _check_fits, daemon, sized)
    if not await containers.image_present(daemon, ask.image):
        raise VfdError(
            ErrorCode.IMAGE_NOT_FOUND,
            f"image {ask.image!r} is not on this node (`vfd image list` shows those that are; "
            "an administrator adds one with `docker pull` or `docker load`)",
            image=ask.image,
        )
    user = caller.user
    name = ask.name or default_name(ask.image)
    mounts = await live.run(Pool.STORE, _plan_mounts, daemon, user, ask.mounts)
    await daemon.plugins.validate_session(
        SessionRequest(
            user_id=user.id,
            user_email=user.email,
            uid=user.uid,
            gid=user.gid,
            name=name,
            image=ask.image,
            command=tuple(ask.command),
            env=dict(ask.env),
            cpu=sized.cpu,
            memory=sized.memory,
            mounts=mounts,
            slots=dict(sized.slots),
        )
    )
    out = await live.run(Pool.STORE, _store, daemon, caller, ask, sized, name, ask.name is None)
    scheduler.wake()
    return out


def _check_fits(daemon: Daemon, sized: session_limits.Sized) -> None:
    with daemon.session() as session:
        capacity.check_fits(
            session, daemon.config, sized.group, sized.cpu, sized.memory, slots=sized.slots
        )


def _sized(daemon: Daemon, user: User, ask: SessionAsk) -> session_limits.Sized:
    """The request's group and size, checked against the user's policy."""
    with daemon.session() as session:
        sized = session_limits.resolve(
            daemon,
            session,
            user,
            group=ask.group,
            preset=ask.preset,
            cpu=ask.cpu,
            memory=ask.memory,
            lifetime=ask.lifetime,
            slots=ask.slots,
        )
        check_size(sized.cpu, sized.memory)
        session_limits.check_policy(session, user, ask.image, sized)
        return sized


def _plan_mounts(daemon: Daemon, user: User, specs: list[str]) -> tuple[MountView, ...]:
    """The mounts ``specs`` ask for (with the user's automount folders), as plugins see them."""
    from vfd.daemon.services.session_mounts import resolve_mounts

    with daemon.session() as session:
        planned = resolve_mounts(session, user, specs)
        return tuple(
            MountView(
                folder=m.name,
                folder_id=m.folder.id,
                target=m.target,
                permission=m.permission.value,
                automount=m.automount,
            )
            for m in planned
        )


def _store(
    daemon: Daemon,
    caller: Caller,
    ask: SessionAsk,
    sized: session_limits.Sized,
    name: str,
    named_by_us: bool,
) -> dict[str, Any]:
    """Insert the session, its mounts and its first event, the name checked free among the
    user's live sessions in the same serialised transaction."""
    from vfd.daemon.services.session_mounts import record_mounts, resolve_mounts

    user = caller.user
    with daemon.naming() as session:
        while _live_named(session, user, name):
            if not named_by_us:
                raise VfdError(
                    ErrorCode.SESSION_EXISTS,
                    f"you have a live session named {name!r} already; give another --name, or "
                    "destroy that one",
                    name=name,
                )
            name = default_name(ask.image)
        # resolved again under the lock: a folder trashed since the first look is refused
        planned = resolve_mounts(session, user, ask.mounts)
        now = utcnow()
        row = ComputeSession(
            name=name,
            user_id=user.id,
            uid=user.uid,
            gid=user.gid,
            node=session_state.node_name(daemon.config),
            image=ask.image,
            command=list(ask.command),
            env=dict(ask.env),
            cpu=sized.cpu,
            memory=sized.memory,
            group=sized.group,
            lifetime=sized.lifetime,
            auto_remove=ask.auto_remove,
            slots=dict(sized.slots) or None,
            status=SessionStatus.PENDING,
            created_at=now,
            status_changed_at=now,
        )
        session.add(row)
        session.flush()
        record_mounts(session, row.id, planned)
        session_state.record_created(session, row)
        audit.record(session, caller, "session.create", name, id=str(row.id), image=ask.image)
        session.flush()
        return session_state.session_json(session, row, events=True)


def _live_named(session: Session, user: User, name: str) -> bool:
    return (
        session.exec(
            select(ComputeSession.id)
            .where(ComputeSession.user_id == user.id)
            .where(ComputeSession.name == name)
            .where(col(ComputeSession.status).in_(list(LIVE)))
        ).first()
        is not None
    )


def list_sessions(daemon: Daemon, caller: Caller, *, include_ended: bool = False) -> dict[str, Any]:
    """The caller's sessions, newest first: the live ones, or every one with
    ``include_ended``."""
    with daemon.session() as session:
        query = select(ComputeSession).where(ComputeSession.user_id == caller.user.id)
        if not include_ended:
            query = query.where(col(ComputeSession.status).in_(list(LIVE)))
        rows = session.exec(
            query.order_by(col(ComputeSession.created_at).desc(), col(ComputeSession.id))
        ).all()
        return {"sessions": [session_state.session_json(session, row) for row in rows]}


def info(daemon: Daemon, caller: Caller, ref: str) -> dict[str, Any]:
    """The caller's session ``ref`` (id, id prefix or live name), with its status history
    and the devices it holds (``devices``: each with its utilisation and memory use where
    the accelerator plugin can tell, while the session is live)."""
    with daemon.session() as session:
        row = session_state.find(session, caller.user, ref)
        out = session_state.session_json(session, row, events=True)
        live = row.status in LIVE
    out["devices"] = devices_json(daemon, out["allocation"], usage=live)
    return out


def devices_json(
    daemon: Daemon, allocation: list[dict[str, Any]], *, usage: bool
) -> list[dict[str, Any]]:
    """The devices of an allocation (``[{slot, device, amount}]``), one entry per device with
    the slots held on it and, with ``usage``, what the plugin says of its use (blocking)."""
    devices: dict[str, dict[str, Any]] = {}
    for held in allocation:
        entry = devices.setdefault(held["device"], {"id": held["device"], "slots": {}})
        entry["slots"][held["slot"]] = entry["slots"].get(held["slot"], 0.0) + held["amount"]
    if usage and devices:
        try:
            seen = daemon.plugins.device_usage(tuple(devices))
        except Exception:
            log.exception("asking the accelerator plugins for device usage failed")
            seen = {}
        for device, entry in devices.items():
            entry["usage"] = dict(seen.get(device) or {})
    return list(devices.values())


async def destroy(
    daemon: Daemon, caller: Caller, ref: str, *, force: bool = False
) -> dict[str, Any]:
    """End the caller's session ``ref``; its Session JSON after.

    Waiting (``pending``, ``scheduled``): cancelled at once. Being prepared or running: the
    launcher stops it (``terminating``; ``terminated`` once its container is gone). Ended: its
    kept container (no ``auto_remove``) is removed. Destroying again is harmless.
    """
    live = runtime.current()
    session_id, status, cancelled, kind = await live.run(
        Pool.STORE, _cancel_waiting, daemon, caller, ref
    )
    if kind is SessionKind.STORAGE:
        from vfd.daemon.services import storage_sessions

        if status not in FINAL:
            await storage_sessions.destroy(daemon, caller, session_id)
    elif not cancelled:
        from vfd.daemon import launcher

        if status in FINAL:
            await launcher.remove_kept(daemon, session_id)
        else:
            await launcher.stop(daemon, session_id, force=force, by=caller.actor.email)
    scheduler.wake()
    return await live.run(Pool.STORE, _json_of, daemon, session_id)


def _cancel_waiting(
    daemon: Daemon, caller: Caller, ref: str
) -> tuple[uuid.UUID, SessionStatus, bool, SessionKind]:
    """Cancel session ``ref`` if it still waits (serialised with the scheduler, which may
    place it meanwhile); its id, its status then, whether it was cancelled now, its kind."""
    with daemon.naming() as session:
        row = session_state.find(session, caller.user, ref)
        if row.kind is SessionKind.STORAGE:
            return row.id, row.status, False, row.kind
        if row.status in WAITING:
            session_state.transition(
                session, row, SessionStatus.CANCELLED, f"destroyed by {caller.actor.email}"
            )
            audit.record(session, caller, "session.destroy", row.name, id=str(row.id))
            return row.id, row.status, True, row.kind
        if row.status in (SessionStatus.PREPARING, SessionStatus.RUNNING):
            audit.record(session, caller, "session.destroy", row.name, id=str(row.id))
        return row.id, row.status, False, row.kind


def _json_of(daemon: Daemon, session_id: uuid.UUID) -> dict[str, Any]:
    with daemon.session() as session:
        return session_state.session_json(session, session_state.load(session, session_id))
