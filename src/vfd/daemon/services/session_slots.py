"""Accelerator slots as requests, presets and policies name them (``{"cuda.shares": 0.5}``).

The slots a daemon knows are those its accelerator plugins register
(``Plugins.slot_specs()``: ``cuda.device``, ``cuda.shares``…). An amount is checked here, the
same way for a session, a preset and a policy: a known slot, a finite positive multiple of the
slot's quantum (1 for whole devices, 0.1 for shares), and at most one slot of each accelerator
(``--gpu`` and ``--fgpu`` together are refused: a node offers one or the other). Refusals are
``invalid_argument`` with ``details.field`` and ``details.slot``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from vfd.daemon.services.context import Daemon
from vfd.errors import ErrorCode, VfdError
from vfd.plugins.types import Allotment, SlotSpec

QUANTUM_SLACK = 1e-6
"""How far from a multiple of the quantum an amount may be (floating point)."""


def known(daemon: Daemon) -> Mapping[str, SlotSpec]:
    """The slots this daemon's plugins offer, by name."""
    specs: Mapping[str, SlotSpec] = daemon.plugins.slot_specs()
    return specs


def check(
    raw: Mapping[str, Any] | None,
    specs: Mapping[str, SlotSpec],
    *,
    field: str = "slots",
    allow_zero: bool = False,
) -> dict[str, float]:
    """``raw`` checked (see the module's docstring) as ``{slot: amount}``; ``allow_zero``
    takes 0 (a policy's "no limit" for one slot, dropped from the answer)."""
    if not raw:
        return {}
    out: dict[str, float] = {}
    accelerators: dict[str, str] = {}
    for name, amount in sorted(raw.items()):
        spec = specs.get(name)
        if spec is None:
            offered = ", ".join(sorted(specs)) or "none: no accelerator plugin is loaded"
            raise VfdError(
                ErrorCode.INVALID_ARGUMENT,
                f"{field}: no slot {name!r} (this daemon offers {offered})",
                field=field,
                slot=name,
            )
        if isinstance(amount, bool) or not isinstance(amount, int | float):
            raise VfdError(
                ErrorCode.INVALID_ARGUMENT,
                f"{field}: {name} must be a number",
                field=field,
                slot=name,
            )
        value = float(amount)
        if value == 0 and allow_zero:
            continue
        if not (math.isfinite(value) and value > 0):
            raise VfdError(
                ErrorCode.INVALID_ARGUMENT,
                f"{field}: {name} must be a positive number, not {amount!r}",
                field=field,
                slot=name,
            )
        steps = value / spec.quantum
        if abs(steps - round(steps)) > QUANTUM_SLACK:
            raise VfdError(
                ErrorCode.INVALID_ARGUMENT,
                f"{field}: {name} is taken in steps of {spec.quantum:g}; {value:g} is not one",
                field=field,
                slot=name,
                quantum=spec.quantum,
            )
        accelerator = name.split(".", 1)[0]
        if accelerator in accelerators:
            raise VfdError(
                ErrorCode.INVALID_ARGUMENT,
                f"{field}: {accelerators[accelerator]} and {name} cannot be asked together "
                "(a node offers whole devices or shares of them, not both)",
                field=field,
                slot=name,
            )
        accelerators[accelerator] = name
        out[name] = round(value, 6)
    return out


def text(slots: Mapping[str, float] | None) -> str:
    """``0.5 cuda.shares`` (several joined by ``, ``); ``-`` for none."""
    if not slots:
        return "-"
    return ", ".join(f"{amount:g} {name}" for name, amount in sorted(slots.items()))


def allocation_label(allocation: tuple[Allotment, ...]) -> str:
    """The ``vfd.allocation`` label of a container: its allotments as compact JSON."""
    return json.dumps(
        [{"slot": a.slot, "device": a.device, "amount": a.amount} for a in allocation],
        separators=(",", ":"),
    )
