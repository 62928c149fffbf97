"""Mount specs of sessions: ``NAME[:TARGET][:ro|:rw]`` parsed, and where each folder goes.

Pure functions, no store and no docker: the daemon resolves the names (``vfd.daemon.services.
session_mounts``), the CLI may check specs before it sends them. Rules (docs/session-mounts.md):

- no TARGET: ``/home/work/NAME`` (the dot-folder ``.linuxbrew``: ``/home/linuxbrew/.linuxbrew``,
  where Homebrew on Linux expects itself); a relative TARGET goes under ``/home/work``; an
  absolute one is used as given. ``.`` parts and repeated or trailing ``/`` are normalised away;
  ``..``, NUL and characters that do not show as themselves are refused; a spec's target cannot
  hold ``:`` (it separates the parts), an automount folder's may (``.a:b`` at ``/home/work/.a:b``).
- ``:ro`` mounts the folder's read-only view, ``:rw`` (the default) its writable one.
- reserved targets are refused (:data:`RESERVED_TREES`, :data:`RESERVED_DIRS`, and the names a
  session's home directory already uses), so are targets equal to or inside another one.

Every refusal is an ``invalid_mount`` VfdError that names the spec and says why.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from vfd.enums import Permission
from vfd.errors import ErrorCode, VfdError
from vfd.folders.names import RESERVED_NAMES, RESERVED_PATTERNS, unshown

HOME = "/home/work"
"""The session's home and working directory (a per-session scratch directory)."""

LINUXBREW = ".linuxbrew"
LINUXBREW_TARGET = "/home/linuxbrew/.linuxbrew"

MAX_TARGET_CHARS = 1024
"""The longest target: the store's ``session_mount.target`` column holds 1024 characters
(far below the kernel's PATH_MAX of 4096, far above any target people write)."""
MAX_PART_CHARS = 255
"""NAME_MAX: the longest name of one directory in a path."""

RESERVED_TREES = ("/proc", "/sys", "/dev", "/etc", "/run", "/var/run", "/boot")
"""Refused, and everything under them: kernel file systems, and files docker manages in the
container (``/etc/hosts``, ``/etc/resolv.conf``, ``/run/secrets`` …)."""

RESERVED_DIRS = frozenset(
    {
        "/",
        "/home",
        HOME,
        "/bin",
        "/sbin",
        "/usr",
        "/usr/bin",
        "/usr/sbin",
        "/usr/libexec",
        "/usr/local",
        "/usr/local/bin",
        "/var",
        "/tmp",
    }
)
"""Refused as themselves (a folder mounted over them would hide what the image needs to run,
or the session's home); directories under them are allowed (``/tmp/data``, ``/usr/local/x``).
``/lib``, ``/lib32``, ``/lib64``, ``/libx32`` and the same under ``/usr`` are refused too."""

_LIB_DIR = re.compile(r"^(/usr)?/lib(32|64|x32)?$")

PERMISSIONS = {"ro": Permission.RO, "rw": Permission.RW}


@dataclass(frozen=True)
class MountSpec:
    """One ``-m`` spec, parsed: which folder, where, through which view."""

    spec: str
    """As given (error messages quote it)."""
    name: str
    """The folder's name."""
    target: str
    """Absolute, normalised path inside the container."""
    permission: Permission
    """``ro`` or ``rw`` (the default: a folder the user may only read needs ``:ro``)."""
    explicit_target: bool
    """TARGET was given (otherwise it is the folder's default place)."""

    def read_only_spec(self) -> str:
        """This spec asking the read-only view (``f1:rw`` -> ``f1:ro``, ``f1:x`` -> ``f1:x:ro``),
        as the refusal of ``rw`` on a folder the user may only read suggests it."""
        if self.permission is Permission.RO:
            return self.spec
        base = self.spec.removesuffix(":rw")
        return f"{base}:ro"


def refuse(spec: str, why: str) -> VfdError:
    """The ``invalid_mount`` error for ``spec``."""
    return VfdError(ErrorCode.INVALID_MOUNT, f"mount {spec!r}: {why}", spec=spec, reason=why)


def parse(spec: str) -> MountSpec:
    """Parse ``NAME[:TARGET][:ro|:rw]`` and resolve its target (see the module docstring).

    A folder name holding ``:`` cannot be named in a spec; ``NAME:ro`` is NAME read-only, so a
    target called ``ro`` is written ``NAME:ro:rw`` or ``NAME:./ro``.
    """
    if not isinstance(spec, str):
        raise refuse(str(spec), "a mount is a string NAME[:TARGET][:ro]")
    if "\x00" in spec:
        raise refuse(spec, "it holds a NUL character")
    parts = spec.split(":")
    permission = Permission.RW
    if len(parts) > 1 and parts[-1] in PERMISSIONS:
        permission = PERMISSIONS[parts.pop()]
    if len(parts) > 2:
        raise refuse(spec, "too many ':' (NAME[:TARGET][:ro]; a name or a target cannot hold ':')")
    name = parts[0]
    if not name:
        raise refuse(spec, "no folder name before ':'" if spec else "it is empty")
    if len(parts) == 2:
        if not parts[1]:
            raise refuse(spec, "the target after ':' is empty")
        target = resolve_target(spec, parts[1])
    else:
        target = resolve_target(spec, default_target(name))
    return MountSpec(spec, name, target, permission, explicit_target=len(parts) == 2)


def default_target(name: str) -> str:
    """Where folder ``name`` goes when no target is given (automount dot-folders too)."""
    if name == LINUXBREW:
        return LINUXBREW_TARGET
    return f"{HOME}/{name}"


def resolve_target(spec: str, target: str) -> str:
    """``target`` made absolute (a relative one under ``/home/work``) and normalised; refused
    (naming ``spec``) when it is malformed or reserved."""
    if (bad := unshown(target)) is not None:
        raise refuse(spec, f"the target holds {bad}, a character that does not show as itself")
    path = target if target.startswith("/") else f"{HOME}/{target}"
    kept: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise refuse(spec, "the target holds '..'")
        if len(part.encode()) > MAX_PART_CHARS:
            raise refuse(spec, f"a part of the target is longer than {MAX_PART_CHARS} bytes")
        kept.append(part)
    path = "/" + "/".join(kept)
    if len(path) > MAX_TARGET_CHARS:
        raise refuse(spec, f"the target is longer than {MAX_TARGET_CHARS} characters")
    if (why := reserved(path)) is not None:
        raise refuse(spec, why)
    return path


def reserved(path: str) -> str | None:
    """Why the normalised absolute ``path`` may not be a mount target; None when it may."""
    for tree in RESERVED_TREES:
        if path == tree or path.startswith(tree + "/"):
            return f"{path} is reserved (nothing may be mounted at or under {tree})"
    if path == HOME:
        return f"{HOME} is the session's home; mount folders under it"
    if path in RESERVED_DIRS or _LIB_DIR.match(path):
        return f"{path} is reserved (the image needs it); mount under it or elsewhere"
    if path.startswith(HOME + "/"):
        first = path[len(HOME) + 1 :].split("/", 1)[0]
        if first in RESERVED_NAMES or any(p.match(first) for p in RESERVED_PATTERNS):
            return f"{HOME}/{first} is reserved (the session's home uses it)"
    return None


def check_overlaps(mounts: Iterable[tuple[str, str]], *, automount: Collection[str] = ()) -> None:
    """Refuse when a target equals or lies inside another. ``mounts`` are ``(spec, target)``
    pairs; an automount folder comes as ``(its name, its target)`` with its name in
    ``automount``, and a clash with it is blamed on the spec that asked for the other target.

    Linear in the number of mounts times the depth of their targets.
    """
    seen: dict[str, str] = {}
    pairs = list(mounts)
    for spec, target in pairs:
        if target in seen:
            raise _overlap(seen[target], target, spec, target, automount)
        seen[target] = spec
    for spec, target in pairs:
        parent = target
        while (cut := parent.rfind("/")) > 0:
            parent = parent[:cut]
            if parent in seen:
                raise _overlap(seen[parent], parent, spec, target, automount)


def _overlap(
    outer_spec: str, outer: str, inner_spec: str, inner: str, automount: Collection[str]
) -> VfdError:
    """The refusal of ``inner`` (``inner_spec``'s target) equal to or inside ``outer``."""
    if (inner_spec in automount) != (outer_spec in automount):
        if inner_spec in automount:
            spec, folder = outer_spec, inner_spec
            clash = f"its target {outer} " + ("is" if inner == outer else f"holds {inner},")
        else:
            spec, folder = inner_spec, outer_spec
            clash = f"its target {inner} " + ("is" if inner == outer else f"lies inside {outer},")
        return refuse(
            spec,
            f"{clash} where your automount folder {folder!r} goes; choose another target, "
            f"or mount {folder!r} elsewhere (-m {folder}:TARGET)",
        )
    if inner == outer:
        return refuse(inner_spec, f"{inner} is also the target of {outer_spec!r}")
    return refuse(inner_spec, f"{inner} lies inside {outer}, the target of {outer_spec!r}")
