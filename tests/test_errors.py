"""The error table: every code maps once to an HTTP status and an errno, and round-trips."""

from __future__ import annotations

import errno

import pytest

from vfd.errors import ErrorCode, VfdError


def test_errors_every_code_has_status_and_errno() -> None:
    for code in ErrorCode:
        assert 400 <= code.http < 600, code
        assert code.errno in errno.errorcode, code
        assert code.value.islower() and " " not in code.value


def test_errors_wire_names_are_unique() -> None:
    names = [code.value for code in ErrorCode]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("code", list(ErrorCode))
def test_errors_json_round_trip(code: ErrorCode) -> None:
    err = VfdError(code, f"message for {code.value}", name="x")
    back = VfdError.from_json(err.to_json())
    assert back is not None
    assert (back.code, back.message, back.details) == (code, err.message, {"name": "x"})


def test_errors_unknown_wire_code_is_internal() -> None:
    back = VfdError.from_json({"error": {"code": "from_the_future", "message": "m"}})
    assert back is not None and back.code is ErrorCode.INTERNAL
    assert VfdError.from_json({"detail": "not ours"}) is None
    assert VfdError.from_json([1, 2]) is None
