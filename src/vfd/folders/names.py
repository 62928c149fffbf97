"""Folder name rules.

A name has 1-64 characters, no ``/``, NUL or control characters, no surrounding whitespace,
is not ``.`` or ``..``, and is not reserved: names a session's home directory already uses
(``.ssh``, ``.jupyter``, ``.terminfo``, ``.tmux.conf``), shell start-up files (``.bashrc``,
``.profile``, ``.bash_profile``, any ``.<word>rc`` / ``.<word>_profile``). ``.local`` and
``.config`` are allowed: an automount ``.local`` folder keeps pip user installs across sessions.
A leading dot makes an automount folder.
"""

from __future__ import annotations

import re

from vfd.errors import ErrorCode, VfdError

MAX_NAME_CHARS = 64
RESERVED_NAMES = frozenset(
    {".ssh", ".jupyter", ".terminfo", ".tmux.conf", ".profile", ".cache", ".vfd", "lost+found"}
)
RESERVED_PATTERNS = (re.compile(r"^\.[a-z0-9]+rc$"), re.compile(r"^\.[a-z0-9]+_profile$"))
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def validate_name(name: str) -> str:
    """Return ``name`` when it may name a folder; raise a VfdError saying why not otherwise."""
    if not name:
        raise VfdError(ErrorCode.INVALID_NAME, "folder name must not be empty", name=name)
    if len(name) > MAX_NAME_CHARS:
        raise VfdError(
            ErrorCode.NAME_TOO_LONG,
            f"folder name has {len(name)} characters; at most {MAX_NAME_CHARS} are allowed",
            name=name,
        )
    if name in (".", ".."):
        raise VfdError(ErrorCode.INVALID_NAME, f"{name!r} cannot name a folder", name=name)
    if "/" in name:
        raise VfdError(ErrorCode.INVALID_NAME, "folder name must not contain '/'", name=name)
    if _CONTROL.search(name):
        raise VfdError(
            ErrorCode.INVALID_NAME, "folder name must not contain control characters", name=name
        )
    if name != name.strip():
        raise VfdError(
            ErrorCode.INVALID_NAME,
            "folder name must not start or end with whitespace",
            name=name,
        )
    if name in RESERVED_NAMES or any(p.match(name) for p in RESERVED_PATTERNS):
        raise VfdError(ErrorCode.RESERVED_NAME, f"{name!r} is a reserved folder name", name=name)
    return name


def is_automount(name: str) -> bool:
    """Dot-folders are mounted into every session of their owner."""
    return name.startswith(".")
