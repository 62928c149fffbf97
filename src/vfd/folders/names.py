"""Folder name rules.

A name has 1-64 characters, no ``/``, no surrounding whitespace, is not ``.`` or ``..``, holds
only characters that show as themselves (:func:`unshown`: no control or format characters —
bidi overrides such as U+202E would let a name pass for another — no private-use,
unassigned or surrogate code points, no line or paragraph separators), and is not reserved:
names a session's home directory already uses (``.jupyter``, ``.terminfo``, ``.tmux.conf``),
shell start-up files (``.bashrc``, ``.profile``, ``.bash_profile``, any ``.<word>rc`` /
``.<word>_profile``). ``.local``, ``.config`` and ``.ssh`` are allowed: an automount
``.local`` folder keeps pip user installs across sessions, and the ``authorized_keys`` of an
automount ``.ssh`` folder open the user's SFTP apps (it is mounted at ``/home/work/.ssh``
like any automount folder; the dotfile paths ``.ssh/authorized_keys``, ``.ssh/id_container``
and ``.ssh/id_container.pub`` stay reserved, and a user with a ``.ssh`` folder has no
dotfiles under ``.ssh/``). A leading dot makes an automount folder.
"""

from __future__ import annotations

import re
import unicodedata

from vfd.errors import ErrorCode, VfdError

MAX_NAME_CHARS = 64
RESERVED_NAMES = frozenset(
    {".jupyter", ".terminfo", ".tmux.conf", ".profile", ".cache", ".vfd", "lost+found"}
)
RESERVED_PATTERNS = (re.compile(r"^\.[a-z0-9]+rc$"), re.compile(r"^\.[a-z0-9]+_profile$"))
UNSHOWN_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"})
"""Unicode categories refused in names: control, format (bidi controls, zero-width
characters), private use, surrogate, unassigned, line and paragraph separators."""


def unshown(text: str) -> str | None:
    """The first character of ``text`` that does not show as itself (see
    :data:`UNSHOWN_CATEGORIES`), as ``U+XXXX``; None when every character does."""
    for c in text:
        if unicodedata.category(c) in UNSHOWN_CATEGORIES:
            return f"U+{ord(c):04X}"
    return None


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
    if (bad := unshown(name)) is not None:
        raise VfdError(
            ErrorCode.INVALID_NAME,
            f"folder name must not contain {bad} (control, format, private-use, unassigned "
            "or separator characters could make it look like another name)",
            name=name,
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
