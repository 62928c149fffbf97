"""``MountdLink.purge`` removes data behind mountd's back only when mountd provably is not
running (no socket file, or ``connect()`` refused); a mountd that times out or drops the
connection in mid-call may still serve the folder, so the purge fails and the data stays.

mountd here is ``fakemountd.FakeMountd``; the link's timeouts are cut to fractions of a second.
"""

from __future__ import annotations

import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakemountd import FakeMountd

from vfd.daemon.mountlink import MountdLink
from vfd.errors import ErrorCode, VfdError
from vfd.folders import layout

SHORT = 0.3


@pytest.fixture
def sock_path() -> Iterator[Path]:
    """A socket path short enough for AF_UNIX."""
    with tempfile.TemporaryDirectory(prefix="vfdlink-", dir="/tmp") as d:
        yield Path(d) / "mountd.sock"


@pytest.fixture
def link(sock_path: Path) -> MountdLink:
    return MountdLink(sock_path, health_timeout=SHORT, call_timeout=SHORT, purge_timeout=SHORT)


def _folder(tmp_path: Path) -> tuple[str, str, Path]:
    """A folder's backing directory with a file in it: (vfid hex, scope, path)."""
    scope = layout.Scope("user", uuid.uuid4())
    vfid = uuid.uuid4()
    path = layout.folder_path(tmp_path / "host", scope, vfid)
    layout.create_folder_dir(path, uid=0, gid=0, project=False)
    (path / "data").write_bytes(b"x" * 100)
    return vfid.hex, str(scope), path


@pytest.mark.parametrize("op", ["detach", "purge"])
def test_mountlink_purge_leaves_data_when_mountd_hangs(
    tmp_path: Path, sock_path: Path, link: MountdLink, op: str
) -> None:
    vfid, scope, path = _folder(tmp_path)
    with FakeMountd(sock_path) as mountd:
        mountd.attached.add(vfid)
        mountd.hang.add(op)
        with pytest.raises(VfdError) as caught:
            link.purge(vfid, "local", scope, path)
        assert caught.value.code is ErrorCode.MOUNTD_UNAVAILABLE
        assert "left in place" in caught.value.message
        assert [c["op"] for c in mountd.hung] == [op]
        assert (path / "data").read_bytes() == b"x" * 100
        mountd.release()
        link.purge(vfid, "local", scope, path)  # the retry, once mountd answers
        assert mountd.ops("purge")[-1]["vfid"] == vfid
    assert not path.exists()


def test_mountlink_purge_removes_directly_when_mountd_is_not_running(
    tmp_path: Path, sock_path: Path, link: MountdLink
) -> None:
    vfid, scope, path = _folder(tmp_path)
    link.purge(vfid, "local", scope, path)  # no socket file
    assert not path.exists()
    vfid, scope, path = _folder(tmp_path)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock_path))  # a socket file nobody listens on: connect() is refused
    try:
        link.purge(vfid, "local", scope, path)
    finally:
        stale.close()
    assert not path.exists()
