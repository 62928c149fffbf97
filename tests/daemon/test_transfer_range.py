"""``transfer.parse_range``: the Range header as RFC 9110 §14 reads it, for a file of 100 bytes."""

from __future__ import annotations

import pytest

from vfd.daemon.services.transfer import parse_range
from vfd.errors import ErrorCode, VfdError

SIZE = 100


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-9", (0, 9)),
        ("bytes=90-", (90, 99)),
        ("bytes=90-500", (90, 99)),
        ("bytes=-10", (90, 99)),
        ("bytes=-1000", (0, 99)),
        ("Bytes = 5-5", (5, 5)),
        ("bytes=0-9,5-19", (0, 19)),
        ("bytes=10-19,0-9", (0, 19)),
        ("bytes=0-9,,", (0, 9)),
        ("bytes=0-9,200-", (0, 9)),
        ("bytes=95-,-3", (95, 99)),
        ("bytes=0-" + "9" * 5000, (0, 99)),
        # ignored (None: the whole file, 200)
        ("items=0-9", None),
        ("bytes 0-9", None),
        ("bytes=abc", None),
        ("bytes=9-0", None),
        ("bytes=0-9,9-0", None),
        ("bytes=", None),
        ("bytes=-", None),
        ("bytes=1-2-3", None),
        ("bytes=0-9,20-29", None),
        ("=0-9", None),
    ],
)
def test_transfer_parse_range(header: str, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, SIZE) == expected


@pytest.mark.parametrize(
    ("header", "size"),
    [
        ("bytes=100-", SIZE),
        ("bytes=100-200,300-", SIZE),
        ("bytes=-0", SIZE),
        ("bytes=" + "9" * 5000 + "-", SIZE),
        ("bytes=0-", 0),
        ("bytes=-5", 0),
    ],
)
def test_transfer_parse_range_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(VfdError) as info:
        parse_range(header, size)
    assert info.value.code is ErrorCode.RANGE_NOT_SATISFIABLE
    assert info.value.details == {"size": size}
