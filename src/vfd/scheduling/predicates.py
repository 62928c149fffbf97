"""The checks a pending session must pass to start, each a pure function
``(session, agent | None, state) -> Verdict`` named as its verdict is.

``agent`` None asks "on some alive agent of the group"; an agent asks "on that one" (only
``fits_agent`` and ``folders_reachable`` look at it). ``state`` is the round so far
(:class:`~vfd.scheduling.state.RoundState`): a session placed earlier in the round counts
against the user's limits and the agent's free resources.

A scheduler composes them: :data:`USER_PREDICATES` depend on the user and the session only,
:data:`AGENT_PREDICATES` on where it would run; :func:`check` runs them all.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

from vfd.plugins.types import CPU_SLACK, Agent, PendingSession, SlotUnit, Snapshot, Verdict
from vfd.scheduling import slots
from vfd.scheduling.state import RoundState

Predicate = Callable[[PendingSession, Agent | None, RoundState], Verdict]


def size(value: float) -> str:
    """``value`` bytes for people: ``512 MiB``, ``1.5 GiB``."""
    for name in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{int(value)} B" if name == "B" else f"{value:.1f} {name}".replace(".0 ", " ")
        value /= 1024
    return f"{value:.1f} TiB".replace(".0 ", " ")


def _short(session: PendingSession, agent: Agent, state: RoundState) -> str | None:
    """What ``agent`` lacks for ``session`` now, or None when it has room."""
    free = state.free.get(agent.id)
    if free is None:
        return "not alive" if agent.group == state.group else f"in group {agent.group}"
    lacks = []
    if session.cpu > free.cpu + CPU_SLACK:
        lacks.append(f"{session.cpu:g} cpu asked, {max(free.cpu, 0):g} free")
    if session.memory > free.memory:
        lacks.append(f"{size(session.memory)} memory asked, {size(max(free.memory, 0))} free")
    if session.slots:
        short = slots_short(session, state.units.get(agent.id, ()))
        if short is not None:
            lacks.append(short)
    return "; ".join(lacks) or None


def slots_short(session: PendingSession, units: tuple[SlotUnit, ...]) -> str | None:
    """Why ``session``'s slots do not fit on ``units`` (an agent's devices), or None when
    they do (:func:`vfd.scheduling.slots.allot`)."""
    for slot, amount in sorted(session.slots.items()):
        if slots.allot(slot, amount, units) is None:
            return slots.why_not(slot, amount, units)
    return None


def _unreachable(session: PendingSession, agent: Agent) -> list[str]:
    if agent.storage_hosts is None:
        return []
    return [h for h in session.storage_hosts if h not in agent.storage_hosts]


def fits_agent(session: PendingSession, agent: Agent | None, state: RoundState) -> Verdict:
    """Some alive agent of the group (or ``agent``) has the free cpu and memory, devices
    that take the accelerator slots asked (:func:`vfd.scheduling.slots.allot`), and reaches
    every storage host of the session; the reason names what is short."""
    if agent is not None:
        short = _short(session, agent, state)
        if short is None and _unreachable(session, agent):
            short = "does not reach storage host " + ", ".join(_unreachable(session, agent))
        if short is None:
            return Verdict("fits_agent", True, f"fits on agent {agent.id}")
        return Verdict("fits_agent", False, f"agent {agent.id}: {short}")
    if not state.alive:
        return Verdict("fits_agent", False, f"no alive agent in group {state.group}")
    reaching = [a for a in state.alive if not _unreachable(session, a)]
    if not reaching:
        return Verdict(
            "fits_agent",
            False,
            f"no alive agent of group {state.group} reaches every storage host of its folders",
        )
    if session.slots:
        return _fits_slots(session, reaching, state)
    room = [a.id for a in reaching if _short(session, a, state) is None]
    if room:
        return Verdict("fits_agent", True, f"fits on {len(room)} agent(s), e.g. {room[0]}")
    cpu = max(reaching, key=lambda a: (state.free[a.id].cpu, a.id))
    memory = max(reaching, key=lambda a: (state.free[a.id].memory, a.id))
    most = f"{max(state.free[cpu.id].cpu, 0):g} cpu on {cpu.id}"
    asked = f"{session.cpu:g} cpu"
    if session.memory > 0:  # a session with no memory limit holds no memory
        asked += f" and {size(session.memory)} memory"
        most += f", {size(max(state.free[memory.id].memory, 0))} on {memory.id}"
    return Verdict(
        "fits_agent",
        False,
        f"no agent of group {state.group} has {asked} free (most free: {most})",
    )


SHOWN = 3
"""How many agents a verdict of a session asking slots names (what each lacks)."""


def _fits_slots(session: PendingSession, reaching: list[Agent], state: RoundState) -> Verdict:
    """:func:`fits_agent` of a session asking slots: each agent's shortfall, named."""
    shorts = [(a.id, _short(session, a, state)) for a in reaching]
    room = [name for name, short in shorts if short is None]
    if room:
        return Verdict("fits_agent", True, f"fits on {len(room)} agent(s), e.g. {room[0]}")
    said = "; ".join(f"agent {name}: {short}" for name, short in shorts[:SHOWN])
    if len(shorts) > SHOWN:
        said += f"; {len(shorts) - SHOWN} more agent(s) short too"
    return Verdict("fits_agent", False, f"no agent of group {state.group} has room for it ({said})")


def folders_reachable(session: PendingSession, agent: Agent | None, state: RoundState) -> Verdict:
    """Every storage host of the folders the session mounts is reachable on ``agent`` (or on
    some alive agent of the group): a node-local host only on its node, a shared one on all."""
    if not session.storage_hosts:
        return _NO_FOLDERS
    if agent is not None:
        missing = _unreachable(session, agent)
        if missing:
            return Verdict(
                "folders_reachable",
                False,
                f"agent {agent.id} does not reach storage host {', '.join(missing)}",
            )
        return Verdict("folders_reachable", True, f"agent {agent.id} reaches its storage hosts")
    if any(not _unreachable(session, a) for a in state.alive):
        return _REACHABLE
    missing = sorted({h for a in state.alive for h in _unreachable(session, a)})
    return Verdict(
        "folders_reachable",
        False,
        f"no alive agent of group {state.group} reaches every storage host it needs "
        f"({', '.join(missing)} missing on some)",
    )


def within_policy(session: PendingSession, agent: Agent | None, state: RoundState) -> Verdict:
    """The user's allocation plus this request stays within the policy's ``max_cpu``,
    ``max_memory`` (0 = no limit) and ``max_slots`` (a missing or 0 slot = no limit)."""
    limits = state.limits(session.user_id)
    capped = session.slots and limits.max_slots
    if not limits.max_cpu and not limits.max_memory and not capped:
        return _NO_POLICY
    total = state.allocation(session.user_id) + session.request
    over = []
    if limits.max_cpu and total.cpu > limits.max_cpu + CPU_SLACK:
        over.append(f"{total.cpu:g} cpu with this one, policy allows {limits.max_cpu:g}")
    if limits.max_memory and total.memory > limits.max_memory:
        over.append(
            f"{size(total.memory)} memory with this one, policy allows {size(limits.max_memory)}"
        )
    if capped:
        for name in sorted(session.slots):
            cap = limits.max_slots.get(name, 0.0)
            held = total.slots.get(name, 0.0)
            if cap and held > cap + CPU_SLACK:
                over.append(f"{held:g} {name} with this one, policy allows {cap:g}")
    if over:
        return Verdict("within_policy", False, "user's sessions would hold " + "; ".join(over))
    if capped:
        return Verdict("within_policy", True, "within the user's cpu, memory and slot limits")
    return Verdict("within_policy", True, "within the user's cpu and memory limits")


def within_concurrency(session: PendingSession, agent: Agent | None, state: RoundState) -> Verdict:
    """The user's live sessions plus this one stay within the policy's ``max_sessions``."""
    limit = state.limits(session.user_id).max_sessions
    if not limit:
        return _NO_CONCURRENCY
    live = state.running.get(session.user_id, 0)
    if live + 1 > limit:
        return Verdict(
            "within_concurrency", False, f"user has {live} live sessions, policy allows {limit}"
        )
    return Verdict("within_concurrency", True, f"user has {live} of {limit} live sessions")


def group_allowed(session: PendingSession, agent: Agent | None, state: RoundState) -> Verdict:
    """The session's resource group matches one of the policy's ``allowed_groups``."""
    allowed = state.limits(session.user_id).allowed_groups
    if not allowed:
        return _ANY_GROUP
    if any(fnmatch.fnmatchcase(session.group, p) for p in allowed):
        return Verdict("group_allowed", True, f"group {session.group} allowed")
    return Verdict(
        "group_allowed",
        False,
        f"group {session.group} not allowed by the user's policy (allowed: {', '.join(allowed)})",
    )


def image_allowed(session: PendingSession, agent: Agent | None, state: RoundState) -> Verdict:
    """The session's image matches one of the policy's ``allowed_images`` patterns."""
    allowed = state.limits(session.user_id).allowed_images
    if not allowed:
        return _ANY_IMAGE
    if any(fnmatch.fnmatchcase(session.image, p) for p in allowed):
        return Verdict("image_allowed", True, f"image {session.image} allowed")
    return Verdict(
        "image_allowed",
        False,
        f"image {session.image or '(none)'} not allowed by the user's policy "
        f"(allowed: {', '.join(allowed)})",
    )


_NO_FOLDERS = Verdict("folders_reachable", True, "mounts no folder")
_REACHABLE = Verdict("folders_reachable", True, "some alive agent reaches its storage hosts")
_NO_POLICY = Verdict("within_policy", True, "no cpu or memory limit")
_NO_CONCURRENCY = Verdict("within_concurrency", True, "no limit on live sessions")
_ANY_GROUP = Verdict("group_allowed", True, "any group allowed")
_ANY_IMAGE = Verdict("image_allowed", True, "any image allowed")

USER_PREDICATES: tuple[Predicate, ...] = (
    group_allowed,
    image_allowed,
    within_concurrency,
    within_policy,
)
"""The checks of the session and its owner: true or false wherever it would run."""

UNLIMITED: tuple[Verdict, ...] = (_ANY_GROUP, _ANY_IMAGE, _NO_CONCURRENCY, _NO_POLICY)
"""What :data:`USER_PREDICATES` say of a user without limits, whatever the session."""

AGENT_PREDICATES: tuple[Predicate, ...] = (folders_reachable, fits_agent)
"""The checks of where it would run."""

PREDICATES: tuple[Predicate, ...] = USER_PREDICATES + AGENT_PREDICATES


def check(
    session: PendingSession,
    snapshot: Snapshot,
    state: RoundState | None = None,
    predicates: tuple[Predicate, ...] = PREDICATES,
) -> tuple[list[Agent], list[Verdict]]:
    """The alive agents of the group ``session`` fits on now (room and storage hosts), and
    the verdict of each predicate on some agent. ``state`` is the round so far (a fresh one
    of ``snapshot`` when None). The session can start when every verdict is ok (then the
    list of agents is not empty)."""
    if state is None:
        state = RoundState(snapshot)
    verdicts = [p(session, None, state) for p in predicates]
    fitting = [a for a in state.alive if fits_agent(session, a, state).ok]
    return fitting, verdicts
