"""The one reader of ``/proc/self/mountinfo`` (proc(5)).

Each line: ``id parent major:minor root mount-point options [optional…] - fstype source
super-options``. The kernel escapes space, tab, newline and backslash in paths as three-digit
octal (``\\040``); everything else is the path's raw bytes, so a path is decoded from bytes
after unescaping (``é`` stays ``é``; a name that is not UTF-8 keeps its bytes as surrogate
escapes, as ``os.fsdecode`` does).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

MOUNTINFO = Path("/proc/self/mountinfo")
_OCTAL = re.compile(rb"\\([0-7]{3})")


@dataclass(frozen=True)
class MountEntry:
    """One mount, as the kernel lists it."""

    mount_id: int
    parent_id: int
    device: str
    """``major:minor`` of the mounted file system."""
    root: str
    """The directory of the file system that is mounted (``/`` for a whole one; a bind mount
    of a subdirectory shows that subdirectory)."""
    mount_point: str
    options: tuple[str, ...]
    fstype: str
    source: str
    super_options: tuple[str, ...] = ()
    """The file system's own options (a FUSE mount's ``user_id=`` says who mounted it)."""


def unescape(field: bytes) -> str:
    """A path field of mountinfo as a string."""
    return os.fsdecode(_OCTAL.sub(lambda m: bytes([int(m.group(1), 8)]), field))


def parse_line(line: bytes) -> MountEntry:
    fields = line.rstrip(b"\n").split(b" ")
    sep = fields.index(b"-", 6)
    return MountEntry(
        mount_id=int(fields[0]),
        parent_id=int(fields[1]),
        device=fields[2].decode(),
        root=unescape(fields[3]),
        mount_point=unescape(fields[4]),
        options=tuple(fields[5].decode().split(",")),
        fstype=unescape(fields[sep + 1]),
        source=unescape(fields[sep + 2]) if len(fields) > sep + 2 else "",
        super_options=tuple(unescape(fields[sep + 3]).split(",")) if len(fields) > sep + 3 else (),
    )


def read(path: Path = MOUNTINFO) -> list[MountEntry]:
    """Every mount, in the kernel's order (a mount stacked on another comes after it)."""
    with open(path, "rb") as f:
        return [parse_line(line) for line in f if line.strip()]


def mounts_at(mount_point: str | os.PathLike[str], path: Path = MOUNTINFO) -> list[MountEntry]:
    """The mounts on ``mount_point`` (an absolute path), bottom first; empty when none."""
    target = os.fspath(mount_point)
    return [entry for entry in read(path) if entry.mount_point == target]


def by_id(mount_id: int, path: Path = MOUNTINFO) -> MountEntry | None:
    """The mount with this id (as ``/proc/self/fdinfo/N`` gives for an fd), if any."""
    for entry in read(path):
        if entry.mount_id == mount_id:
            return entry
    return None
