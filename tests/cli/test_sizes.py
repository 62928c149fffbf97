"""The one size parser (``10G``, ``512M``, ``1.5T``, bytes) and human sizes."""

from __future__ import annotations

import pytest

from vfd.cli.sizes import MAX_SIZE, format_limit, format_size, parse_size
from vfd.errors import ErrorCode, VfdError


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("1024", 1024),
        ("1024B", 1024),
        ("10G", 10 * 2**30),
        ("10g", 10 * 2**30),
        ("10GiB", 10 * 2**30),
        ("10GB", 10 * 2**30),
        ("512M", 512 * 2**20),
        ("1.5T", 3 * 2**39),
        ("0.5K", 512),
        (" 2 k ", 2048),
        ("1P", 2**50),
        (".5M", 2**19),
    ],
)
def test_sizes_parse_accepts_units(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize(
    "text", ["", "G", "10X", "-1", "1.5", "ten", "10 G B", "1e3", "1,5G", "16E"]
)
def test_sizes_parse_rejects_bad_input_with_a_clear_message(text: str) -> None:
    with pytest.raises(VfdError) as caught:
        parse_size(text)
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT
    assert repr(text) in caught.value.message


def test_sizes_parse_largest_size_fits_in_a_signed_64_bit_column() -> None:
    assert parse_size("7E") == 7 * 2**60 <= MAX_SIZE


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "-"),
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1 KiB"),
        (1536, "1.5 KiB"),
        (10 * 2**30, "10 GiB"),
        (3 * 2**39, "1.5 TiB"),
        (2**62, "4 EiB"),
    ],
)
def test_sizes_format_is_binary_and_short(value: int | None, text: str) -> None:
    assert format_size(value) == text


def test_sizes_format_limit_zero_is_unlimited() -> None:
    assert format_limit(0) == "unlimited"
    assert format_limit(None) == "unlimited"
    assert format_limit(2**20) == "1 MiB"
