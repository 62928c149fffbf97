"""Durations on the command line: ``90``, ``90s``, ``30m``, ``1.5h``, ``7d`` (seconds out),
and seconds shown for people (``1h30m``)."""

from __future__ import annotations

import math
import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)\s*$", re.IGNORECASE)
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_SECONDS = 100 * 365 * 86400.0
"""A hundred years: a longer duration is a mistake."""


def parse_duration(text: str) -> float:
    """Seconds in ``text`` (a number with an optional unit s, m, h or d); ValueError when
    it is none or longer than a hundred years."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(text)
    seconds = float(match.group(1)) * _SECONDS[match.group(2).lower()]
    if not math.isfinite(seconds) or seconds > MAX_SECONDS:
        raise ValueError(text)
    return seconds


def duration_option(text: str) -> float:
    """Typer ``parser=`` for duration options: bad input is a usage error naming it."""
    try:
        return parse_duration(text)
    except ValueError:
        import typer  # only to refuse: vfd run's fast path parses durations without typer

        raise typer.BadParameter(
            f"{text!r} is not a duration: seconds, or a number with s, m, h or d "
            "(e.g. 90, 30m, 1.5h, 7d)"
        ) from None


def format_duration(seconds: float | None, *, zero: str = "never") -> str:
    """``seconds`` for people: ``45s``, ``30m``, ``1h30m``, ``2d``; ``zero`` for 0 or None."""
    if not seconds:
        return zero
    if seconds < 60:
        return f"{seconds:g}s"
    total = round(seconds)
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if total >= size:
            out.append(f"{total // size}{unit}")
            total %= size
    return "".join(out[:2])
