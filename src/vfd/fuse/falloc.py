"""The ``fallocate(2)`` modes the rw view offers, and what each does to a file's counted size.

Quota counts a regular file's apparent size (docs/storage.md), so a mode is offered only
when its effect on the disk is visible in that size:

* plain allocation (0) and ``FALLOC_FL_ZERO_RANGE`` grow the size to ``offset + length``
  when that is past it; the growth is reserved before the call (EDQUOT, nothing stored);
* ``FALLOC_FL_INSERT_RANGE`` grows the size by ``length`` (reserved first);
* ``FALLOC_FL_COLLAPSE_RANGE`` shrinks it by ``length`` (released after the call);
* ``FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE`` frees blocks and changes no size;
* ``FALLOC_FL_KEEP_SIZE`` (alone or with ZERO_RANGE) is offered within the file's size
  only: blocks it allocates there lie below the counted size. Past the end it would hold
  disk that no size shows, so it answers EOPNOTSUPP there and allocates nothing.

Any other mode or combination answers EOPNOTSUPP before the backing file is touched, so no
mode the accounting has not been written for can reach it. Invalid arguments of an offered
mode (misaligned collapse, insert at or past the end...) are the backing file system's to
refuse, with its own errno.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_COLLAPSE_RANGE = 0x08
FALLOC_FL_ZERO_RANGE = 0x10
FALLOC_FL_INSERT_RANGE = 0x20

ALLOCATE = 0
KEEP_SIZE = FALLOC_FL_KEEP_SIZE
PUNCH_HOLE = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
ZERO_RANGE = FALLOC_FL_ZERO_RANGE
ZERO_RANGE_KEEP_SIZE = FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE
COLLAPSE_RANGE = FALLOC_FL_COLLAPSE_RANGE
INSERT_RANGE = FALLOC_FL_INSERT_RANGE

OFFERED = frozenset(
    {ALLOCATE, KEEP_SIZE, PUNCH_HOLE, ZERO_RANGE, ZERO_RANGE_KEEP_SIZE}
    | {COLLAPSE_RANGE, INSERT_RANGE}
)


class Refused(Exception):
    """The view does not offer this call; ``errno`` says how it is answered."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.errno = code


@dataclass(frozen=True)
class Effect:
    """What an offered call does to the counted size of a file."""

    grow: int
    """Bytes to reserve before the call (0 when it does not grow the file)."""
    shrink: int
    """Bytes to release after the call succeeded (0 when it does not shrink the file)."""


def effect(mode: int, offset: int, length: int, size: int, disk_size: int) -> Effect:
    """The effect of ``fallocate(mode, offset, length)`` on a file of counted ``size``
    whose backing file is ``disk_size`` long; raises :class:`Refused`.

    ``disk_size`` bounds KEEP_SIZE: space reserved for a write still in flight is counted
    but not yet on disk, and blocks allocated there would stay if that write failed.
    """
    if mode not in OFFERED:
        raise Refused(errno.EOPNOTSUPP)
    if offset < 0 or length <= 0:
        raise Refused(errno.EINVAL)
    end = offset + length
    if mode in (KEEP_SIZE, ZERO_RANGE_KEEP_SIZE):
        if end > min(size, disk_size):
            raise Refused(errno.EOPNOTSUPP)  # disk past the end, which no size counts
        return Effect(0, 0)
    if mode in (ALLOCATE, ZERO_RANGE):
        return Effect(max(0, end - size), 0)
    if mode == INSERT_RANGE:
        return Effect(length, 0)
    if mode == COLLAPSE_RANGE:
        return Effect(0, length)
    return Effect(0, 0)  # PUNCH_HOLE
