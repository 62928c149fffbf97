"""The ``fifo`` scheduler: sessions start in the order they were asked for.

Oldest first (ties by id), each placed by best fit when it passes every predicate. The first
session that passes its user's checks but fits on no agent is the head of the line: for
``hol_rounds`` rounds in a row (option, default 3) nothing behind it starts, so a large
session is not starved by small ones; from the next round on, the sessions behind it are tried
(and start where they fit) while it keeps its place. The count lives in the decision's memo
and starts again when another session becomes the head. A session its own policy holds back
(concurrency, cpu or memory total, image or group not allowed) never holds the line.

``lifo`` (:mod:`vfd.plugins.builtin.lifo`) is the same rule, newest first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vfd.errors import ErrorCode, VfdError
from vfd.plugins.hookspecs import hookimpl
from vfd.plugins.types import Decision, PendingSession, SchedulerSpec, Snapshot, Verdict
from vfd.scheduling.placement import best_fit, first_failing, placements, waiting_verdicts
from vfd.scheduling.state import RoundState

DEFAULT_HOL_ROUNDS = 3


class QueueScheduler:
    """Sessions in one order (oldest or newest first), the head of the line holding the rest
    back for ``hol_rounds`` rounds."""

    def __init__(self, *, newest_first: bool = False, hol_rounds: int = DEFAULT_HOL_ROUNDS):
        self.newest_first = newest_first
        self.hol_rounds = hol_rounds

    def decide(self, snapshot: Snapshot) -> Decision:
        state = RoundState(snapshot)
        order = sorted(
            snapshot.pending, key=lambda s: (s.created_at, s.id), reverse=self.newest_first
        )
        which = "newest" if self.newest_first else "oldest"
        limit = self.hol_rounds
        head: PendingSession | None = None
        rounds = 0
        behind: Verdict | None = None  # what those behind a head holding the line are told
        queue: dict[Any, Verdict] = {}
        waiting: list[PendingSession] = []
        own_policy = Verdict(
            "queue", True, "held back by its own policy, it does not hold the line"
        )
        tried: Verdict | None = None  # what those tried past the head are told
        for session in order:
            if behind is not None:
                waiting.append(session)
                queue[session.id] = behind
                continue
            failing = first_failing(session, state)
            if failing is not None:
                waiting.append(session)
                queue[session.id] = own_policy
                continue
            agent = best_fit(session, state)
            if agent is not None:
                state.place(session, agent.id)
                continue
            waiting.append(session)
            if head is None:
                head = session
                rounds = _rounds(snapshot.memo, session) + 1
                if rounds <= limit:
                    behind = Verdict(
                        "queue",
                        False,
                        f"waiting behind session {head.name} "
                        f"(first in line, round {rounds} of {limit})",
                    )
                    reason = (
                        f"first in line (round {rounds} of {limit}): the sessions behind it "
                        "wait until it fits"
                    )
                else:
                    reason = (
                        f"first in line for {rounds} rounds (holds the line for {limit}): "
                        "the sessions behind it are tried"
                    )
                queue[session.id] = Verdict("queue", True, reason)
            else:
                if tried is None:
                    tried = Verdict(
                        "queue",
                        True,
                        f"tried past session {head.name} (first in line for {rounds} rounds, "
                        f"{which} first)",
                    )
                queue[session.id] = tried
        memo = {"head": str(head.id), "rounds": rounds} if head is not None else {}
        return Decision(
            place=placements(state),
            waiting=waiting_verdicts(waiting, state, queue),
            memo=memo,
        )


def _rounds(memo: Mapping[str, Any], head: PendingSession) -> int:
    """How many rounds in a row ``head`` has been the head of the line before this one."""
    if memo.get("head") != str(head.id):
        return 0
    rounds = memo.get("rounds")
    return rounds if isinstance(rounds, int) and rounds >= 0 else 0


def hol_rounds(options: Mapping[str, Any], scheduler: str) -> int:
    """The ``hol_rounds`` option: a whole number of rounds, 0 or more."""
    unknown = sorted(set(options) - {"hol_rounds"})
    if unknown:
        raise VfdError(
            ErrorCode.CONFIG_INVALID,
            f"scheduler {scheduler}: unknown options {', '.join(unknown)} (known: hol_rounds)",
            scheduler=scheduler,
        )
    value = options.get("hol_rounds", DEFAULT_HOL_ROUNDS)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise VfdError(
            ErrorCode.CONFIG_INVALID,
            f"scheduler {scheduler}: hol_rounds must be a whole number of rounds >= 0, "
            f"not {value!r}",
            scheduler=scheduler,
        )
    return value


def _factory(options: Mapping[str, Any]) -> QueueScheduler:
    return QueueScheduler(hol_rounds=hol_rounds(options, "fifo"))


@hookimpl
def vfd_register_schedulers() -> list[SchedulerSpec]:
    return [
        SchedulerSpec(
            name="fifo",
            description="oldest first; the head of the line holds the rest back for "
            "hol_rounds rounds (default 3)",
            factory=_factory,
        )
    ]
