"""The daemon's side of the direct transfer path (``TransferLink``) against a mountd that
does not offer it (an older mountd; ``fakemountd.FakeMountd`` answers ``unknown op``), or
that is away: the transfer falls back to the view, with nothing left open."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakemountd import FakeMountd

from vfd.daemon.mountlink import MountdLink
from vfd.errors import ErrorCode, VfdError


@pytest.fixture
def sock_path() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="vfdlink-", dir="/tmp") as d:
        yield Path(d) / "mountd.sock"


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _fds_back(before: int) -> bool:
    """Whether this process is back to ``before`` fds (the fake's end of a connection is
    closed by its handler thread once it reads EOF)."""
    deadline = time.monotonic() + 5
    while _fds() > before:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return _fds() == before


def test_direct_link_falls_back_without_the_op(sock_path: Path, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    fd = os.open(tmp_path / "f", os.O_RDWR)
    try:
        with FakeMountd(sock_path) as mountd:
            before = _fds()
            link = MountdLink(sock_path, call_timeout=2).transfer()
            assert link.open_read(fd) is None
            link.close()
            link = MountdLink(sock_path, call_timeout=2).transfer()
            assert link.open_write(fd, 10) is None
            assert link.open_write(fd, 10) is None  # once fallen back, it stays so
            link.close()
            assert [c["op"] for c in mountd.calls] == ["backing_open", "backing_open"]
            assert _fds_back(before)
            # a refusal that is not about the op is the transfer's answer, not a fallback
            mountd.fail["backing_open"] = ErrorCode.QUOTA_EXCEEDED
            link = MountdLink(sock_path, call_timeout=2).transfer()
            with pytest.raises(VfdError) as exc:
                link.open_write(fd, 10)
            assert exc.value.code is ErrorCode.QUOTA_EXCEEDED
            link.close()
            assert _fds_back(before)
    finally:
        os.close(fd)


def test_direct_link_without_mountd_falls_back(sock_path: Path, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        before = _fds()
        link = MountdLink(sock_path, call_timeout=2).transfer()
        assert link.open_read(fd) is None
        link.close()
        with pytest.raises(VfdError) as exc:  # a closed link makes no more calls
            link.settle(1)
        assert exc.value.code is ErrorCode.MOUNTD_UNAVAILABLE
        assert _fds_back(before)
    finally:
        os.close(fd)
