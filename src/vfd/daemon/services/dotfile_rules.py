"""What a dotfile request may hold: a path relative to ``/home/work``, not one of vfd's own; a
permission mode; base64 data within ``[sessions] dotfile_max_size``. Pure checks, no store.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Collection

from vfd.errors import ErrorCode, VfdError
from vfd.folders.names import unshown
from vfd.sessions.mounts import HOME

MAX_PATH_BYTES = 256
DEFAULT_MODE = 0o644
RESERVED_PATHS = frozenset({".ssh/authorized_keys", ".ssh/id_container", ".ssh/id_container.pub"})
"""Files vfd itself writes into a session's home (the SSH access of sessions)."""
RESERVED_DIRS = frozenset({".vfd"})
"""Directories of ``/home/work`` that belong to vfd: nothing under them may be a dotfile."""
_MODE = re.compile(r"^[0-7]{3,4}$")


def normalize_path(raw: str) -> str:
    """``raw`` as a path relative to ``/home/work``, or ``invalid_path`` saying why not.

    A leading ``/home/work/`` or ``~/`` is stripped; any other absolute path, an empty, ``.``
    or ``..`` component, NUL or a character that does not show as itself, or more than
    :data:`MAX_PATH_BYTES` bytes is refused.
    """

    def bad(why: str) -> VfdError:
        return VfdError(ErrorCode.INVALID_PATH, f"dotfile path {raw!r}: {why}", path=raw)

    path = raw
    for prefix in (HOME + "/", "~/"):
        if path.startswith(prefix):
            path = path[len(prefix) :]
            break
    if not path:
        raise bad("it names no file")
    if path.startswith("/") or path.startswith("~"):
        raise bad(f"an absolute path must be under {HOME}")
    if "\x00" in path:
        raise bad("it contains NUL")
    if (char := unshown(path)) is not None:
        raise bad(f"it contains {char} (control or format characters are not allowed)")
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError:
        raise bad("it is not valid Unicode text") from None
    if size > MAX_PATH_BYTES:
        raise bad(f"it has {size} bytes; at most {MAX_PATH_BYTES} are allowed")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise bad("empty, '.' and '..' components are not allowed")
    return path


def check_reserved(path: str, automounts: Collection[str] = ()) -> None:
    """``reserved_name`` when ``path`` is vfd's own or lies under one of ``automounts`` (the
    owner's automount folder names, mounted over ``/home/work/NAME``)."""
    first = path.split("/", 1)[0]
    if path in RESERVED_PATHS or first in RESERVED_DIRS:
        raise VfdError(
            ErrorCode.RESERVED_NAME, f"{path!r} is reserved for vfd's own files", path=path
        )
    if first in automounts:
        raise VfdError(
            ErrorCode.RESERVED_NAME,
            f"{path!r} would be hidden by your automount folder {first!r}, mounted at "
            f"{HOME}/{first}; put the file into that folder instead",
            path=path,
            folder=first,
        )


def parse_mode(text: str) -> int:
    """An octal permission string (``"644"``, ``"0755"``) as an int; ``invalid_argument`` for
    anything else, setuid, setgid and sticky bits included."""
    if not _MODE.match(text):
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT,
            f"mode {text!r} is not an octal permission such as 644 or 0755",
            field="mode",
        )
    mode = int(text, 8)
    if mode & ~0o777:
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT,
            f"mode {text!r} has setuid, setgid or sticky bits; only permission bits are allowed",
            field="mode",
        )
    return mode


def decode_data(text: str, max_size: int) -> bytes:
    """The bytes of base64 ``text``; ``invalid_argument`` when it is not base64 or they are
    more than ``max_size`` (``details.max``)."""
    if len(text) > 4 * ((max_size + 2) // 3):
        raise _too_big((len(text) // 4) * 3, max_size)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT, "data is not valid base64", field="data"
        ) from None
    if len(data) > max_size:
        raise _too_big(len(data), max_size)
    return data


def _too_big(size: int, max_size: int) -> VfdError:
    return VfdError(
        ErrorCode.INVALID_ARGUMENT,
        f"a dotfile may hold at most {max_size} bytes ([sessions] dotfile_max_size); "
        f"this one has {size}",
        field="data",
        max=max_size,
        size=size,
    )
