"""The ``lifo`` scheduler: the newest pending session first.

The rule of ``fifo`` (:mod:`vfd.plugins.builtin.fifo`) in the other order: newest first (ties
by id, descending), best fit, and the head of the line (the newest session that passes its
user's checks but fits nowhere) holds the older ones back for ``hol_rounds`` rounds (option,
default 3).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vfd.plugins.builtin.fifo import QueueScheduler, hol_rounds
from vfd.plugins.hookspecs import hookimpl
from vfd.plugins.types import SchedulerSpec


def _factory(options: Mapping[str, Any]) -> QueueScheduler:
    return QueueScheduler(newest_first=True, hol_rounds=hol_rounds(options, "lifo"))


@hookimpl
def vfd_register_schedulers() -> list[SchedulerSpec]:
    return [
        SchedulerSpec(
            name="lifo",
            description="newest first; the head of the line holds the rest back for "
            "hol_rounds rounds (default 3)",
            factory=_factory,
        )
    ]
