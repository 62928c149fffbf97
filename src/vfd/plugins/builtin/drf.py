"""The ``drf`` scheduler: Dominant Resource Fairness (Ghodsi et al., NSDI 2011).

A user's dominant share is the largest of their cpu share, their memory share and their share
of each accelerator slot (of the devices of that slot in the group's alive agents), from every
session they hold in the group plus those this round places.
Progressive filling: the user with the smallest dominant share (ties: the one whose next
session was asked for first, then the smaller session id) gets their next session (each
user's sessions go oldest first), placed by best fit; their share grows by that session's
dominant share, and the next smallest goes. A user whose next session fits nowhere, or waits
on their policy's cpu, memory or session limit, is skipped for the rest of the round; a
session whose image or group their policy does not allow is passed over and the user's next
one is tried.

The share comes from what each user holds, not from the size of the session in hand, so a
user gains nothing by asking for more than their sessions need.
"""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Mapping
from typing import Any

from vfd.errors import ErrorCode, VfdError
from vfd.plugins.hookspecs import hookimpl
from vfd.plugins.types import Decision, PendingSession, SchedulerSpec, Snapshot, Verdict
from vfd.scheduling.placement import (
    best_fit,
    first_failing,
    fits_when_empty,
    placements,
    waiting_verdicts,
)
from vfd.scheduling.state import RoundState, shares

PASSED_OVER = frozenset({"image_allowed", "group_allowed"})
"""Failing these passes one session over; failing the others stops its user for the round."""


class DrfScheduler:
    """Progressive filling; with ``backfill`` off, the round ends at the first user (smallest
    share) whose next session could fit on an agent but does not now."""

    def __init__(self, *, backfill: bool = False) -> None:
        self.backfill = backfill

    def decide(self, snapshot: Snapshot) -> Decision:
        state = RoundState(snapshot)
        queues: dict[uuid.UUID, list[PendingSession]] = {}
        for session in sorted(snapshot.pending, key=lambda s: (s.created_at, s.id)):
            queues.setdefault(session.user_id, []).append(session)
        next_index = dict.fromkeys(queues, 0)
        heap = [(state.share(user), q[0].created_at, q[0].id, user) for user, q in queues.items()]
        heapq.heapify(heap)
        queue: dict[uuid.UUID, Verdict] = {}
        skipped: set[uuid.UUID] = set()
        held: PendingSession | None = None
        while heap:
            _, _, _, user = heapq.heappop(heap)
            sessions = queues[user]
            index = next_index[user]
            session = sessions[index]
            failing = first_failing(session, state)
            if failing is None:
                agent = best_fit(session, state)
                if agent is None:
                    if not self.backfill and fits_when_empty(session, state):
                        held = session
                        break
                    skipped.add(user)
                    continue
                state.place(session, agent.id)
            elif failing.name in PASSED_OVER:
                queue[session.id] = Verdict(
                    "queue", True, "passed over: its user's policy does not allow it"
                )
            else:
                skipped.add(user)
                continue
            index = next_index[user] = index + 1
            if index < len(sessions):
                after = sessions[index]
                heapq.heappush(heap, (state.share(user), after.created_at, after.id, user))
        waiting: list[PendingSession] = []
        for user, sessions in queues.items():
            waiting.extend(s for s in sessions if s.id not in state.placed)
            index = next_index[user]
            if index >= len(sessions):
                continue
            first = sessions[index]
            share = _describe_share(state, user)
            if user in skipped:
                ok, reason = True, "the user was skipped for the rest of the round"
            elif first is held:
                ok, reason = True, "the round ends until it fits (backfill off)"
            else:
                assert held is not None
                ok = False
                reason = f"waiting for session {held.name}, whose user goes first, to fit"
            queue[first.id] = Verdict(
                "queue", ok, f"next of its user (dominant share {share}); {reason}"
            )
            behind = Verdict(
                "queue",
                False,
                f"behind session {first.name} of the same user (each user's sessions "
                "start oldest first)",
            )
            for later in sessions[index + 1 :]:
                queue[later.id] = behind
        return Decision(place=placements(state), waiting=waiting_verdicts(waiting, state, queue))


def _describe_share(state: RoundState, user: uuid.UUID) -> str:
    each = shares(state.allocation(user), state.total)
    name = max(each, key=lambda k: each[k])  # cpu first among equals, then memory
    return f"{each[name]:.3f}, {name}"


def _factory(options: Mapping[str, Any]) -> DrfScheduler:
    unknown = sorted(set(options) - {"backfill"})
    if unknown:
        raise VfdError(
            ErrorCode.CONFIG_INVALID,
            f"scheduler drf: unknown options {', '.join(unknown)} (known: backfill)",
            scheduler="drf",
        )
    backfill = options.get("backfill", False)
    if not isinstance(backfill, bool):
        raise VfdError(
            ErrorCode.CONFIG_INVALID,
            f"scheduler drf: backfill must be true or false, not {backfill!r}",
            scheduler="drf",
        )
    return DrfScheduler(backfill=backfill)


@hookimpl
def vfd_register_schedulers() -> list[SchedulerSpec]:
    return [
        SchedulerSpec(
            name="drf",
            description="dominant resource fairness (Ghodsi et al. 2011) between users",
            factory=_factory,
        )
    ]
