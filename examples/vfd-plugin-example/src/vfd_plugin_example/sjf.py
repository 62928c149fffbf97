"""``sjf``: shortest job first, by the lifetime each session asked for (``vfd run --lifetime``).

The pending sessions are tried from the shortest requested lifetime to the longest, those
that asked for none last (ties: the one asked for first, then the id); each is placed by
vfd's best fit when it passes every predicate, and one that cannot start does not hold back
the others. Short jobs finish soon and free their room, so the average wait is shortest;
long and unlimited ones may wait for as long as short ones keep coming.

Built from vfd's scheduling library: a plugin's scheduler decides the order and reuses the
predicates, the placement and the verdicts.
"""

from __future__ import annotations

import math
import uuid

from vfd.plugins import Decision, PendingSession, Snapshot, Verdict
from vfd.scheduling.placement import best_fit, first_failing, placements, waiting_verdicts
from vfd.scheduling.state import RoundState


def _key(session: PendingSession) -> tuple[float, object, uuid.UUID]:
    lifetime = math.inf if session.lifetime is None else session.lifetime
    return (lifetime, session.created_at, session.id)


class ShortestJobFirst:
    def decide(self, snapshot: Snapshot) -> Decision:
        state = RoundState(snapshot)
        queue: dict[uuid.UUID, Verdict] = {}
        waiting: list[PendingSession] = []
        for position, session in enumerate(sorted(snapshot.pending, key=_key), 1):
            if first_failing(session, state) is None:
                agent = best_fit(session, state)
                if agent is not None:
                    state.place(session, agent.id)
                    continue
            asked = "no lifetime" if session.lifetime is None else f"{session.lifetime:g} s"
            queue[session.id] = Verdict(
                "queue", True, f"number {position} by requested lifetime ({asked}); not holding"
            )
            waiting.append(session)
        return Decision(place=placements(state), waiting=waiting_verdicts(waiting, state, queue))
