"""File names on the wire: names whose bytes are not UTF-8 travel losslessly in JSON.

Inside vfd (daemon and CLI alike) a file name or path is a ``str`` as :mod:`os` gives it: its
bytes decoded as UTF-8 with ``surrogateescape``, so that a byte which is not part of valid
UTF-8 (``b"\\xff"``) is a lone surrogate (``"\\udcff"``). Such a string has no strict JSON
form. So the API carries every name or path field ``X`` as text and, only when its bytes are
not UTF-8, adds ``X_b64``: the standard base64 (with padding) of the bytes. ``X`` is then a
display string with U+FFFD for each undecodable byte, which does not address the file.
Requests accept ``X_b64`` in place of ``X`` (never both); a text field holding a lone
surrogate is refused, so that there is exactly one way to send each name.

People see such names through :func:`escaped`, as ``ls -b`` shows them: ``\\xff`` for a byte
that is not UTF-8 and for control characters, ``\\\\`` for a backslash.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from typing import Any

from vfd.errors import ErrorCode, VfdError

SUFFIX = "_b64"

_CONTROL_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\\": "\\\\"}


def _refused(field: str, message: str) -> VfdError:
    return VfdError(ErrorCode.INVALID_ARGUMENT, message, field=field)


def is_text(name: str) -> bool:
    """Whether ``name`` is plain Unicode text (its bytes are UTF-8, no lone surrogate)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def name_bytes(name: str) -> bytes:
    """The bytes a name stands for (``"\\udcff"`` is the byte 0xff)."""
    return name.encode("utf-8", "surrogateescape")


def display(name: str) -> str:
    """``name`` as text: each byte that is not UTF-8 becomes U+FFFD (lossy; for showing)."""
    return "".join("\ufffd" if _is_surrogate(c) else c for c in name)


def fields(key: str, name: str) -> dict[str, str]:
    """``{key: name}``, or ``{key: display, key_b64: base64}`` when ``name`` is not text."""
    if is_text(name):
        return {key: name}
    return {key: display(name), key + SUFFIX: _b64(name)}


def list_fields(key: str, names: Iterable[str]) -> dict[str, list[str]]:
    """``{key: [...]}`` of display strings, plus ``key_b64`` (every name, in the same order)
    when any of them is not text."""
    names = list(names)
    out = {key: [display(n) for n in names]}
    if not all(is_text(n) for n in names):
        out[key + SUFFIX] = [_b64(n) for n in names]
    return out


def request_fields(key: str, name: str) -> dict[str, str]:
    """How a client sends ``name`` as field ``key``: as text, or as ``key_b64``."""
    return {key: name} if is_text(name) else {key + SUFFIX: _b64(name)}


def request_list_fields(key: str, names: list[str]) -> dict[str, list[str]]:
    """How a client sends a list of names: as ``key`` when all are text, else every name in
    ``key_b64``."""
    if all(is_text(n) for n in names):
        return {key: names}
    return {key + SUFFIX: [_b64(n) for n in names]}


def from_answer(obj: Mapping[str, Any], key: str) -> str:
    """The name an answer carries in field ``key`` (its ``key_b64`` when there is one)."""
    raw = obj.get(key + SUFFIX)
    if isinstance(raw, str):
        try:
            return decode_b64(raw, key + SUFFIX)
        except VfdError:
            pass
    return str(obj.get(key, ""))


def from_request(text: str | None, b64: str | None, field: str) -> str | None:
    """The name a request gives as ``field`` (text) or ``field_b64``; None when neither."""
    if text is not None and b64 is not None:
        raise _refused(field, f"give {field!r} or {field + SUFFIX!r}, not both")
    if b64 is not None:
        return decode_b64(b64, field + SUFFIX)
    if text is not None and not is_text(text):
        raise _refused(
            field,
            f"{field} holds a lone surrogate ({escaped(text)}); send names that are not UTF-8 "
            f"as {field + SUFFIX}",
        )
    return text


def decode_b64(value: str, field: str) -> str:
    """The name whose bytes ``value`` encodes in standard base64."""
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise _refused(field, f"{field} is not valid base64") from None
    return raw.decode("utf-8", "surrogateescape")


def escaped(name: str) -> str:
    """``name`` for people, unambiguous and printable (as ``ls -b``): ``\\xNN`` for a byte
    that is not UTF-8 or a control character, ``\\\\`` for a backslash, ``\\uXXXX`` for a
    surrogate that stands for no byte."""
    out: list[str] = []
    for c in name:
        code = ord(c)
        if c in _CONTROL_ESCAPES:
            out.append(_CONTROL_ESCAPES[c])
        elif 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif _is_surrogate(c):
            out.append(f"\\u{code:04x}")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        else:
            out.append(c)
    return "".join(out)


def readable(text: str) -> str:
    """``text`` (a message that may quote names) with each lone surrogate written as
    ``\\xNN`` (or ``\\uXXXX``) and nothing else changed: safe to encode as UTF-8."""
    if is_text(text):
        return text
    return "".join(escaped(c) if _is_surrogate(c) else c for c in text)


def json_safe(value: Any) -> Any:
    """A JSON value (an error's shape) with every string made encodable: a string field
    naming something that is not UTF-8 gets its display form and its ``_b64`` twin, and a
    ``message`` shows such bytes as ``\\xNN``; strings in lists are made :func:`readable`.
    Without this, an error about such a file would itself fail to be sent."""
    if isinstance(value, str):
        return readable(value)
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, v in value.items():
            if isinstance(v, str) and key != "message" and not is_text(v):
                out.update(fields(str(key), v))
            else:
                out[key] = json_safe(v)
        return out
    return value


def _is_surrogate(c: str) -> bool:
    return 0xD800 <= ord(c) <= 0xDFFF


def _b64(name: str) -> str:
    try:
        raw = name_bytes(name)
    except UnicodeEncodeError:  # a surrogate that stands for no byte: keep what we can
        raw = name.encode("utf-8", "replace")
    return base64.b64encode(raw).decode("ascii")
