"""mountd's live quota counters: one :class:`ScopeUsage` per (host, scope), O(1) to read.

Every change goes through the trio thread, so a check and the reservation that follows it
cannot interleave with another request: two writers racing for the last free bytes cannot
both pass. Growth is reserved *before* the data is stored (``reserve``), and given back when
the store fails; shrinking is applied after it happened (``release``).

Files that are open are tracked by backing inode in :class:`OpenFiles`, which knows their size
without a ``stat`` per write, and holds the space of a file unlinked while open until its last
``release`` (the data stays on disk until then).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

import pyfuse3

from vfd.folders.quota import Limits, Usage, grows_past

BackingKey = tuple[int, int]
"""(st_dev, st_ino) of a backing inode."""


class ScopeUsage:
    """Limits and usage of one quota scope on one storage host."""

    __slots__ = ("dirty", "files", "host", "limits", "nbytes", "scope")

    def __init__(self, host: str, scope: str, limits: Limits, used: Usage) -> None:
        self.host = host
        self.scope = scope
        self.limits = limits
        self.nbytes = used.bytes
        self.files = used.files
        self.dirty = False

    @property
    def used(self) -> Usage:
        return Usage(self.nbytes, self.files)

    def reserve(self, nbytes: int = 0, files: int = 0) -> None:
        """Account growth, or raise ``FUSEError(EDQUOT)`` with nothing changed."""
        if grows_past(self.limits, self.nbytes, self.files, nbytes, files):
            raise pyfuse3.FUSEError(errno.EDQUOT)
        self.nbytes += nbytes
        self.files += files
        self.dirty = True

    def release(self, nbytes: int = 0, files: int = 0) -> None:
        """Account freed space (or growth that must not fail, with negative amounts)."""
        self.nbytes -= nbytes
        self.files -= files
        self.dirty = True

    def set_used(self, used: Usage) -> None:
        self.nbytes, self.files = used.bytes, used.files
        self.dirty = True

    def to_json(self) -> dict[str, int | str]:
        used = self.used.clamp()
        return {
            "host": self.host,
            "scope": self.scope,
            "max_bytes": self.limits.max_bytes,
            "max_files": self.limits.max_files,
            "used_bytes": used.bytes,
            "used_files": used.files,
        }


@dataclass(eq=False)
class OpenFile:
    """A regular backing file with at least one open handle."""

    key: BackingKey
    usage: ScopeUsage
    size: int
    """The size as far as accounted: the backing size plus writes reserved but not done."""
    handles: int = 0
    inflight: int = 0
    orphaned: bool = False
    """Unlinked (last name) while open: its space is freed at the last release."""
    unsure: bool = False
    """A write failed or was short: the size is re-read when no write is in flight."""


@dataclass
class OpenFiles:
    """The open regular files, by backing inode."""

    files: dict[BackingKey, OpenFile] = field(default_factory=dict)

    def get(self, key: BackingKey) -> OpenFile | None:
        return self.files.get(key)

    def acquire(self, key: BackingKey, usage: ScopeUsage, size: int) -> OpenFile:
        of = self.files.get(key)
        if of is None:
            of = self.files[key] = OpenFile(key, usage, size)
        of.handles += 1
        return of

    def drop(self, of: OpenFile) -> None:
        """One handle closed; at the last one an orphan's space is given back."""
        of.handles -= 1
        if of.handles > 0:
            return
        del self.files[of.key]
        if of.orphaned:
            of.usage.release(of.size, 1)

    def orphans(self, usage: ScopeUsage) -> Usage:
        """What the scope's open orphans still hold (a rescan cannot see them)."""
        held = [of.size for of in self.files.values() if of.orphaned and of.usage is usage]
        return Usage(sum(held), len(held))
