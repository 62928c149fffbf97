"""Folder name rules."""

from __future__ import annotations

import pytest

from vfd.errors import ErrorCode, VfdError
from vfd.folders.names import is_automount, validate_name


@pytest.mark.parametrize("name", ["data", "my data", "a" * 64, ".local", ".config", "é-ü_1", "x.y"])
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
        (".ssh", ErrorCode.RESERVED_NAME),
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
    assert not is_automount("local")
