"""Sizes people type and read: ``10G``, ``512M``, ``1.5T``, plain bytes; ``1.5 GiB`` back.

Units are binary (``1K`` = 1024 bytes), as ``df -h`` and quota tools print them. The suffix
may be spelled ``G``, ``GB``, ``Gi`` or ``GiB``, in any case. There is one parser; options
taking a size use :data:`SIZE` so that bad input is a usage error naming the option.
"""

from __future__ import annotations

import math
import re

from vfd.errors import ErrorCode, VfdError

_UNITS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5, "e": 6}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgtpe]?)(?:i?b)?\s*$", re.IGNORECASE)
_NAMES = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
MAX_SIZE = 2**63 - 1


def parse_size(text: str) -> int:
    """The number of bytes ``text`` means; ``VfdError(INVALID_ARGUMENT)`` saying why not."""
    match = _SIZE.match(text)
    if match is None:
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT,
            f"{text!r} is not a size: use bytes or a number with K, M, G, T or P "
            "(binary units), e.g. 512M, 10G, 1.5T",
            value=text,
        )
    number, unit = match.groups()
    power = _UNITS[unit.lower()]
    if power == 0 and "." in number:
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT,
            f"{text!r} is not a whole number of bytes; add a unit (e.g. 1.5G)",
            value=text,
        )
    value = math.floor(float(number) * 1024**power) if "." in number else int(number) << 10 * power
    if value > MAX_SIZE:
        raise VfdError(ErrorCode.INVALID_ARGUMENT, f"{text!r} is too large a size", value=text)
    return value


def format_size(value: int | None) -> str:
    """``value`` bytes for people: ``0 B``, ``512 KiB``, ``1.5 GiB``; ``-`` for unknown."""
    if value is None:
        return "-"
    size = float(value)
    for name in _NAMES:
        if abs(size) < 1024 or name == _NAMES[-1]:
            if name == "B":
                return f"{int(size)} B"
            return f"{size:.1f} {name}".replace(".0 ", " ")
        size /= 1024
    raise AssertionError("unreachable")


def format_limit(value: int | None) -> str:
    """A byte limit for people, where 0 (and None) means no limit."""
    return "unlimited" if not value else format_size(value)


def size_option(text: str) -> int:
    """Typer ``parser=`` for size options: bad input is a usage error (exit 2) naming it."""
    try:
        return parse_size(text)
    except VfdError as exc:
        import typer  # only to refuse: vfd run's fast path parses sizes without typer

        raise typer.BadParameter(exc.message) from None
