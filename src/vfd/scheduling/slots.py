"""Accelerator slots: where a request of devices goes among a node's devices.

A node offers each of its accelerator devices (or MIG instances) as one
:class:`~vfd.plugins.types.SlotUnit` of one slot: ``cuda.device`` units are worth 1 (whole
devices), ``cuda.shares`` units their shares. :func:`allot` places one slot's request on a
node's units, the same way wherever it is asked (the scheduler's predicates, its placement,
the loop that records the allocation), so what the scheduler says fits is what the node gets:

- a request no larger than one device goes on **one** device: of the devices with room,
  a partly used one first (the **fragmentation guard**: an empty device is not broken into
  while a partly used one fits), the one left with the least free after it (best fit), ties
  to the smaller device id;
- a larger request takes **whole free devices**, chosen close together (the group whose
  devices are nearest each other by topology distance: the same board, switch, host bridge,
  NUMA node), and puts what is left over (less than one device) on one more device by the
  rule above, preferring one close to the others;
- a request of a slot the node does not offer, or that its devices cannot hold, fits
  nowhere: :func:`why_not` says why.

Amounts are compared in thousandths, so ``0.1 + 0.2`` shares are ``0.3``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence

from vfd.plugins.types import Allotment, SlotUnit

SCALE = 1000
"""Amounts are compared as integers of 1/SCALE."""

FAR = 50
"""The distance of two devices on different NUMA nodes (NVML's ``SYSTEM`` level)."""
SAME_NUMA = 40
"""The distance of two devices of one NUMA node whose link is not known closer."""

MAX_EXACT = 12
"""Up to this many free devices, every group of whole devices is tried for the closest; past
it, groups grow greedily from each device."""


def q(amount: float) -> int:
    """``amount`` in thousandths."""
    return round(amount * SCALE)


def distance(a: SlotUnit, b: SlotUnit) -> int:
    """How far apart two devices are (lower is closer): the declared or discovered topology
    level, else :data:`SAME_NUMA` on one NUMA node, else :data:`FAR`."""
    if a.device == b.device:
        return 0
    known = a.near.get(b.device)
    if known is None:
        known = b.near.get(a.device)
    if known is not None:
        return known
    if a.numa is not None and a.numa == b.numa:
        return SAME_NUMA
    return FAR


def spread(units: Sequence[SlotUnit]) -> int:
    """The sum of pairwise distances of ``units``: what a multi-device allocation
    minimises."""
    return sum(distance(a, b) for a, b in itertools.combinations(units, 2))


def _one(need: int, units: Iterable[SlotUnit], near: Sequence[SlotUnit] = ()) -> SlotUnit | None:
    """The device that takes ``need`` (thousandths) whole: a partly used one with room
    before an empty one, then the least free left, then the closest to ``near``, then the
    smallest id."""
    best: SlotUnit | None = None
    best_key: tuple[int, int, int, str] | None = None
    for u in units:
        free = q(u.free)
        if free < need:
            continue
        empty = 1 if q(u.used) <= 0 else 0
        key = (empty, free - need, sum(distance(u, n) for n in near), u.device)
        if best_key is None or key < best_key:
            best, best_key = u, key
    return best


def _whole_group(count: int, empty: Sequence[SlotUnit]) -> list[SlotUnit] | None:
    """``count`` devices of ``empty`` as close together as can be (ties: smaller ids)."""
    if count > len(empty):
        return None
    if count <= 0:
        return []
    ordered = sorted(empty, key=lambda u: u.device)
    if len(ordered) <= MAX_EXACT:
        best: list[SlotUnit] | None = None
        best_key: tuple[int, list[str]] | None = None
        for combo in itertools.combinations(ordered, count):
            key = (spread(combo), [u.device for u in combo])
            if best_key is None or key < best_key:
                best, best_key = list(combo), key
        return best
    # many devices (MIG instances): grow a group from each device, nearest first
    best = None
    best_key = None
    for seed in ordered:
        group = [seed]
        rest = [u for u in ordered if u is not seed]
        while len(group) < count:
            nxt = min(rest, key=lambda u: (sum(distance(u, g) for g in group), u.device))
            group.append(nxt)
            rest.remove(nxt)
        key = (spread(group), sorted(u.device for u in group))
        if best_key is None or key < best_key:
            best, best_key = group, key
    return best


def allot(slot: str, amount: float, units: Sequence[SlotUnit]) -> tuple[Allotment, ...] | None:
    """Where ``amount`` of ``slot`` goes among ``units`` (a node's devices, with what is
    used of them), or None when it does not fit now. Units of other slots are ignored."""
    need = q(amount)
    mine = [u for u in units if u.slot == slot]
    if need <= 0:
        return ()
    if not mine:
        return None
    largest = max(q(u.capacity) for u in mine)
    if need <= largest:
        one = _one(need, mine)
        return None if one is None else (Allotment(slot, one.device, amount),)
    empty = [u for u in mine if q(u.used) <= 0 and q(u.capacity) > 0]
    # fewest whole devices whose capacity covers the request, then the remainder on one more
    for count in range(1, len(empty) + 1):
        group = _whole_group_covering(need, count, empty)
        if group is None:
            continue
        whole = sum(q(u.capacity) for u in group)
        if whole >= need:
            return _as_allotments(slot, group, need)
        rest = need - whole
        if rest >= largest:
            continue  # more whole devices are needed
        chosen = {u.device for u in group}
        extra = _one(rest, (u for u in mine if u.device not in chosen), near=group)
        if extra is not None:
            out = [Allotment(slot, u.device, float(u.capacity)) for u in group]
            out.append(Allotment(slot, extra.device, rest / SCALE))
            return tuple(sorted(out, key=lambda a: a.device))
    return None


def _whole_group_covering(
    need: int, count: int, empty: Sequence[SlotUnit]
) -> list[SlotUnit] | None:
    """The closest group of ``count`` empty devices (largest first when they differ: a group
    of ``count`` that leaves the least over one device to place)."""
    if count > len(empty):
        return None
    sizes = sorted({q(u.capacity) for u in empty}, reverse=True)
    if len(sizes) == 1:
        return _whole_group(count, empty)
    # devices of different sizes: the largest ones (closest among equals)
    ordered = sorted(empty, key=lambda u: (-q(u.capacity), u.device))
    return ordered[:count]


def _as_allotments(slot: str, group: Sequence[SlotUnit], need: int) -> tuple[Allotment, ...]:
    """``need`` spread over ``group`` (whose capacity covers it): whole devices but the last
    (by id) takes what is left."""
    out: list[Allotment] = []
    left = need
    for u in sorted(group, key=lambda u: u.device):
        take = min(q(u.capacity), left)
        if take > 0:
            out.append(Allotment(slot, u.device, take / SCALE))
        left -= take
    return tuple(out)


def allot_all(
    slots: Mapping[str, float], units: Sequence[SlotUnit]
) -> tuple[Allotment, ...] | None:
    """:func:`allot` for every slot of a request; None when one does not fit."""
    out: list[Allotment] = []
    for slot, amount in sorted(slots.items()):
        got = allot(slot, amount, units)
        if got is None:
            return None
        out.extend(got)
    return tuple(out)


def take(units: Sequence[SlotUnit], allotments: Iterable[Allotment]) -> tuple[SlotUnit, ...]:
    """``units`` with ``allotments`` held (what is left for the next request)."""
    held: dict[tuple[str, str], float] = {}
    for a in allotments:
        held[a.slot, a.device] = held.get((a.slot, a.device), 0.0) + a.amount
    if not held:
        return tuple(units)
    return tuple(
        u
        if (u.slot, u.device) not in held
        else SlotUnit(
            slot=u.slot,
            device=u.device,
            capacity=u.capacity,
            used=u.used + held[u.slot, u.device],
            numa=u.numa,
            near=u.near,
        )
        for u in units
    )


def why_not(slot: str, amount: float, units: Sequence[SlotUnit]) -> str:
    """Why ``amount`` of ``slot`` does not fit on ``units`` now (for a verdict)."""
    mine = [u for u in units if u.slot == slot]
    if not mine:
        offered = sorted({u.slot for u in units})
        if offered:
            return f"{amount:g} {slot} asked, it offers {', '.join(offered)} only"
        return f"{amount:g} {slot} asked, it has no such devices"
    total = sum(q(u.capacity) for u in mine)
    free = sum(max(q(u.free), 0) for u in mine)
    need = q(amount)
    if need > total:
        return f"{amount:g} {slot} asked, it has {total / SCALE:g} in all"
    if need > free:
        return f"{amount:g} {slot} asked, {free / SCALE:g} free"
    best = max(max(q(u.free), 0) for u in mine)
    return (
        f"{amount:g} {slot} asked, {free / SCALE:g} free but split over devices "
        f"(at most {best / SCALE:g} on one)"
    )


def units_from_json(raw: object) -> tuple[SlotUnit, ...]:
    """The units of an agent row's ``accelerators`` column (``{name: {units: [...]}}``);
    malformed entries are skipped."""
    if not isinstance(raw, Mapping):
        return ()
    out: list[SlotUnit] = []
    for entry in raw.values():
        if not isinstance(entry, Mapping):
            continue
        for u in entry.get("units") or ():
            try:
                near = u.get("near") or {}
                out.append(
                    SlotUnit(
                        slot=str(u["slot"]),
                        device=str(u["device"]),
                        capacity=float(u["capacity"]),
                        numa=None if u.get("numa") is None else int(u["numa"]),
                        near={str(k): int(v) for k, v in near.items()},
                    )
                )
            except (KeyError, TypeError, ValueError, AttributeError):
                continue
    return tuple(out)


def unit_json(u: SlotUnit) -> dict[str, object]:
    """What :func:`units_from_json` reads back."""
    return {
        "slot": u.slot,
        "device": u.device,
        "capacity": u.capacity,
        "numa": u.numa,
        "near": dict(u.near),
    }


def allotments_from_json(raw: object) -> tuple[Allotment, ...]:
    """A session row's ``allocation`` column as allotments (malformed entries skipped)."""
    if not isinstance(raw, list):
        return ()
    out: list[Allotment] = []
    for a in raw:
        try:
            out.append(Allotment(str(a["slot"]), str(a["device"]), float(a["amount"])))
        except (KeyError, TypeError, ValueError):
            continue
    return tuple(out)


def allotments_json(allotments: Iterable[Allotment]) -> list[dict[str, object]]:
    return [{"slot": a.slot, "device": a.device, "amount": a.amount} for a in allotments]
