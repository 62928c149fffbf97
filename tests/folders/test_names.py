"""Folder name rules."""

from __future__ import annotations

import pytest

from vfd.errors import ErrorCode, VfdError
from vfd.folders.names import is_automount, validate_name


@pytest.mark.parametrize(
    "name",
    [
        "data",
        "my data",
        "a" * 64,
        ".local",
        ".config",
        ".ssh",
        "é-ü_1",
        "x.y",
        "日本語",
        "a\u00a0b",
        "😀",
    ],
)
def test_names_accepts_valid(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("", ErrorCode.INVALID_NAME),
        ("a" * 65, ErrorCode.NAME_TOO_LONG),
        (".", ErrorCode.INVALID_NAME),
        ("..", ErrorCode.INVALID_NAME),
        ("../x", ErrorCode.INVALID_NAME),
        ("a/b", ErrorCode.INVALID_NAME),
        ("/etc", ErrorCode.INVALID_NAME),
        ("a\x00b", ErrorCode.INVALID_NAME),
        ("tab\there", ErrorCode.INVALID_NAME),
        (" lead", ErrorCode.INVALID_NAME),
        ("trail ", ErrorCode.INVALID_NAME),
        ("ev\u202eil", ErrorCode.INVALID_NAME),  # RIGHT-TO-LEFT OVERRIDE (Cf)
        ("a\u200bb", ErrorCode.INVALID_NAME),  # ZERO WIDTH SPACE (Cf)
        ("a\x85b", ErrorCode.INVALID_NAME),  # NEXT LINE (C1 control, Cc)
        ("a\ue000b", ErrorCode.INVALID_NAME),  # private use (Co)
        ("a\ud800b", ErrorCode.INVALID_NAME),  # lone surrogate (Cs)
        ("a\u0378b", ErrorCode.INVALID_NAME),  # unassigned (Cn)
        ("a\u2028b", ErrorCode.INVALID_NAME),  # LINE SEPARATOR (Zl)
        ("a\u2029b", ErrorCode.INVALID_NAME),  # PARAGRAPH SEPARATOR (Zp)
        (".jupyter", ErrorCode.RESERVED_NAME),
        (".bashrc", ErrorCode.RESERVED_NAME),
        (".zshrc", ErrorCode.RESERVED_NAME),
        (".bash_profile", ErrorCode.RESERVED_NAME),
        (".terminfo", ErrorCode.RESERVED_NAME),
    ],
)
def test_names_rejects_invalid(name: str, code: ErrorCode) -> None:
    with pytest.raises(VfdError) as info:
        validate_name(name)
    assert info.value.code is code
    assert info.value.message


def test_names_leading_dot_is_automount() -> None:
    assert is_automount(".local")
    assert is_automount(".ssh")  # its authorized_keys open the user's SFTP apps
    assert not is_automount("local")
