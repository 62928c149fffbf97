"""How names that are not UTF-8 travel (``X`` + ``X_b64``) and how people see them."""

from __future__ import annotations

import base64
import json
import os

import pytest

from vfd import wirenames
from vfd.errors import ErrorCode, VfdError

RAW = b"name\xff.txt"
NAME = os.fsdecode(RAW)  # as os.listdir and argv give it: "name\udcff.txt"
B64 = base64.b64encode(RAW).decode()


def test_wirenames_text_travels_as_itself() -> None:
    assert wirenames.fields("name", "caf\u00e9.txt") == {"name": "caf\u00e9.txt"}
    assert wirenames.request_fields("path", "a/b") == {"path": "a/b"}
    assert wirenames.list_fields("removed", ["a", "b"]) == {"removed": ["a", "b"]}


def test_wirenames_bytes_travel_as_b64_beside_a_display_string() -> None:
    out = wirenames.fields("name", NAME)
    assert out == {"name": "name\ufffd.txt", "name_b64": B64}
    json.dumps(out).encode("utf-8")  # strict JSON, encodable
    assert wirenames.from_answer(out, "name") == NAME
    assert wirenames.request_fields("path", NAME) == {"path_b64": B64}
    assert wirenames.list_fields("removed", ["a", NAME]) == {
        "removed": ["a", "name\ufffd.txt"],
        "removed_b64": [base64.b64encode(b"a").decode(), B64],
    }
    assert wirenames.request_list_fields("paths", ["a", NAME]) == {
        "paths_b64": [base64.b64encode(b"a").decode(), B64]
    }


def test_wirenames_requests_give_one_unambiguous_form() -> None:
    assert wirenames.from_request(None, B64, "path") == NAME
    assert wirenames.from_request("x", None, "path") == "x"
    assert wirenames.from_request(None, None, "path") is None
    for text, b64 in (("x", B64), (None, "!!"), (None, "\u00e9"), (NAME, None)):
        with pytest.raises(VfdError) as caught:
            wirenames.from_request(text, b64, "path")
        assert caught.value.code is ErrorCode.INVALID_ARGUMENT
        assert caught.value.details["field"].startswith("path")


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("plain.txt", "plain.txt"),
        ("caf\u00e9", "caf\u00e9"),
        (NAME, "name\\xff.txt"),
        ("a\\xff", "a\\\\xff"),  # a real backslash never looks like an escaped byte
        ("tab\there\n", "tab\\there\\n"),
        ("bell\x07", "bell\\x07"),
        ("\ud800", "\\ud800"),
    ],
)
def test_wirenames_escaped_like_ls_b(name: str, shown: str) -> None:
    assert wirenames.escaped(name) == shown
    shown.encode("utf-8")


def test_wirenames_json_safe_error_shape() -> None:
    err = VfdError(ErrorCode.PATH_NOT_FOUND, f"{NAME}: No such file", path=NAME, n=1)
    out = wirenames.json_safe(err.to_json())
    assert out["error"]["message"] == "name\\xff.txt: No such file"
    assert out["error"]["details"] == {"path": "name\ufffd.txt", "path_b64": B64, "n": 1}
    json.dumps(out, ensure_ascii=False).encode("utf-8")
