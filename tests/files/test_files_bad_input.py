"""File routes given odd input: Range headers off the happy path (RFC 9110), a move with no
destination, sizes past any file, mount targets with components too long. Each answer is the
file or a 4xx, never a 500."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from filenode import Node

DATA = bytes(range(100))


@dataclass
class Folder:
    http: httpx.Client
    name: str

    def download(self, range_header: str, **headers: str) -> httpx.Response:
        return self.http.get(
            f"/v1/vfolders/{self.name}/download",
            params={"path": "f.bin"},
            headers={"Range": range_header, **headers},
        )


@pytest.fixture(scope="module")
def folder(node: Node) -> Iterator[Folder]:
    owner = node.user()
    name = node.folder(owner)["name"]
    with node.http(as_=owner["email"]) as http:
        resp = http.put(
            f"/v1/vfolders/{name}/upload",
            params={"path": "f.bin", "key": secrets.token_hex(8), "size": len(DATA)},
            content=DATA,
        )
        assert resp.status_code == 200 and resp.json()["complete"], resp.text
        yield Folder(http, name)


@pytest.mark.parametrize(
    "header",
    [
        "items=0-5",  # another unit
        "bytes 0-5",  # no '='
        "bytes=abc",
        "bytes=5-3",  # last before first: an invalid range-spec
        "bytes=0-5,7-3",  # one invalid spec makes the whole header invalid
        "bytes=",
        "bytes=-",
        "bytes=0-9,50-59",  # several disjoint ranges: served whole, not as multipart
        "bytes=1-1,3-3,5-5",
    ],
)
def test_files_range_ignored_gets_the_whole_file(folder: Folder, header: str) -> None:
    resp = folder.download(header)
    assert resp.status_code == 200, resp.text
    assert resp.content == DATA
    assert "Content-Range" not in resp.headers


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=10-19", 10, 19),
        ("bytes=90-", 90, 99),
        ("bytes=90-1000", 90, 99),
        ("bytes=-10", 90, 99),
        ("bytes=-500", 0, 99),  # a suffix longer than the file is the whole file
        ("BYTES = 0-0", 0, 0),  # the unit is case-insensitive
        ("bytes=0-9,5-19", 0, 19),  # overlapping ranges are served as their union
        ("bytes=10-19,0-9", 0, 19),  # touching ranges too, in any order
        ("bytes=0-9, ,200-300", 0, 9),  # empty elements and a range past the end are dropped
        ("bytes=0-" + "9" * 5000, 0, 99),  # more digits than int() takes by default
    ],
)
def test_files_range_served(folder: Folder, header: str, first: int, last: int) -> None:
    resp = folder.download(header)
    assert resp.status_code == 206, resp.text
    assert resp.content == DATA[first : last + 1]
    assert resp.headers["Content-Range"] == f"bytes {first}-{last}/{len(DATA)}"


@pytest.mark.parametrize(
    "header",
    ["bytes=100-", "bytes=100-200", "bytes=-0", "bytes=100-,200-", "bytes=" + "9" * 5000 + "-"],
)
def test_files_range_unsatisfiable_says_the_length(folder: Folder, header: str) -> None:
    resp = folder.download(header)
    assert resp.status_code == 416, resp.text
    assert resp.json()["error"]["code"] == "range_not_satisfiable"
    assert resp.headers["Content-Range"] == f"bytes */{len(DATA)}"


def test_files_range_with_a_stale_if_range_gets_the_whole_file(folder: Folder) -> None:
    resp = folder.download("bytes=1000-", **{"If-Range": '"not-this-version"'})
    assert resp.status_code == 200 and resp.content == DATA


def test_files_move_without_destination_says_so(folder: Folder) -> None:
    for dst in ("", "/", ".", "./"):
        resp = folder.http.post(
            f"/v1/vfolders/{folder.name}/move", json={"src": "f.bin", "dst": dst}
        )
        assert resp.status_code == 400, resp.text
        err = resp.json()["error"]
        assert err["code"] == "invalid_path"
        assert err["details"]["field"] == "dst"
        assert "destination" in err["message"] and "root cannot be moved" not in err["message"]


def test_files_upload_sizes_past_any_file_are_refused(folder: Folder) -> None:
    for params in ({"size": 2**70}, {"size": 10, "offset": 2**63}, {"size": 2**63}):
        resp = folder.http.put(
            f"/v1/vfolders/{folder.name}/upload",
            params={"path": "big.bin", "key": secrets.token_hex(8), **params},
            content=b"",
        )
        assert resp.status_code == 400, (params, resp.text)
        assert resp.json()["error"]["code"] == "invalid_argument"


def test_files_mount_target_with_a_long_component(folder: Folder) -> None:
    target = "/tmp/" + "x" * 300
    resp = folder.http.post(f"/v1/vfolders/{folder.name}/mount", json={"target": target})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] == "name_too_long"
    resp = folder.http.post("/v1/umount", json={"target": "/tmp/" + "y" * 10000})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] == "name_too_long"
