"""Smoke tests of a real mount: data through rw/, the ro/ view, df, virtual xattrs, file
ownership, and what survives a mountd restart or crash."""

from __future__ import annotations

import errno
import os
import platform
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pyfuse3
import pytest
import xattr
from harness import Folder, MountdProcess, is_mounted, wait_until
from sqlmodel import select

from vfd.fuse import libfuse
from vfd.store.db import session_scope
from vfd.store.models import QuotaScope

pytestmark = pytest.mark.fuse

MiB = 1 << 20


def test_mount_write_read_and_ro_view(folder: Folder) -> None:
    """Data written through rw/ is in the backing directory and visible through ro/, where
    writing fails with EROFS."""
    data = os.urandom(3 * MiB + 17)
    (folder.rw / "sub").mkdir()
    (folder.rw / "sub" / "blob").write_bytes(data)
    assert (folder.backing / "sub" / "blob").read_bytes() == data
    assert (folder.ro / "sub" / "blob").read_bytes() == data
    assert sorted(os.listdir(folder.ro)) == ["sub"]
    with pytest.raises(OSError) as exc:
        (folder.ro / "sub" / "blob").write_bytes(b"no")
    assert exc.value.errno == errno.EROFS
    assert (folder.rw / "sub" / "blob").read_bytes() == data


def test_mount_ro_sees_rw_changes_on_next_open(folder: Folder) -> None:
    """Close-to-open between the views: a file read through ro/, rewritten through rw/,
    reads the new data through ro/ on the next open."""
    (folder.rw / "f").write_bytes(b"old data")
    assert (folder.ro / "f").read_bytes() == b"old data"
    with open(folder.rw / "f", "r+b") as f:
        f.write(b"NEW")
    assert (folder.ro / "f").read_bytes() == b"NEW data"
    (folder.rw / "f").write_bytes(b"x" * 20)
    assert (folder.ro / "f").read_bytes() == b"x" * 20


def test_mount_df_shows_the_quota(mountd: MountdProcess) -> None:
    """df on a folder (or a file in it) reports the scope's limit as its size."""
    mountd.require_fast_path()  # statfs and fallocate are low-level handlers
    folder = mountd.new_folder(max_bytes=100 * MiB, max_files=500)
    (folder.rw / "f").write_bytes(b"d" * (10 * MiB))
    for path in (folder.rw, folder.ro, folder.rw / "f"):
        out = (
            subprocess.run(
                ["df", "-B1", "--output=size,used,avail,itotal,iused", str(path)],
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.split("\n")[1]
            .split()
        )
        size, used, avail, itotal, iused = map(int, out)
        assert (size, used, avail) == (100 * MiB, 10 * MiB, 90 * MiB), out
        assert (itotal, iused) == (500, 1), out
    top = os.statvfs(mountd.mount_point)
    assert top.f_blocks != 100 * MiB // top.f_frsize


def test_mount_virtual_quota_xattrs(mountd: MountdProcess) -> None:
    """The xattr package reads user.vfd.quota.* on folder roots; they cannot be set."""
    folder = mountd.new_folder(max_bytes=8 * MiB, max_files=100)
    (folder.rw / "f").write_bytes(b"q" * 4321)
    attrs = xattr.xattr(str(folder.rw))
    assert attrs[b"user.vfd.quota.max_bytes"] == str(8 * MiB).encode()
    assert attrs[b"user.vfd.quota.max_files"] == b"100"
    assert attrs[b"user.vfd.quota.used_bytes"] == b"4321"
    assert attrs[b"user.vfd.quota.used_files"] == b"1"
    assert "user.vfd.quota.used_bytes" in xattr.xattr(str(folder.ro)).list()
    with pytest.raises(OSError) as exc:
        attrs[b"user.vfd.quota.max_bytes"] = b"0"
    assert exc.value.errno == errno.EPERM
    xattr.xattr(str(folder.rw / "f"))[b"user.note"] = b"kept"
    assert os.getxattr(folder.backing / "f", "user.note") == b"kept"


_CHILD = """
import os, sys
d = os.open(sys.argv[3], os.O_RDONLY | os.O_DIRECTORY)  # before dropping root: the
os.setgid(int(sys.argv[2])); os.setuid(int(sys.argv[1]))  # test's tmp dir is 0700
fd = os.open("file", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=d)
os.write(fd, b"mine"); os.close(fd)
os.mkdir("dir", dir_fd=d)
os.symlink("file", "link", dir_fd=d)
"""


def test_mount_files_belong_to_the_caller(mountd: MountdProcess) -> None:
    """Files, directories and links made by uid 1000 are owned by 1000:1000 on the backing
    file system (mountd works as root on the caller's behalf)."""
    folder = mountd.new_folder(uid=1000, gid=1000)
    subprocess.run(
        [sys.executable, "-c", _CHILD, "1000", "1000", str(folder.rw)], check=True, timeout=60
    )
    for name in ("file", "dir", "link"):
        st = os.lstat(folder.backing / name)
        assert (st.st_uid, st.st_gid) == (1000, 1000), name
    st = os.stat(folder.rw / "file")
    assert (st.st_uid, st.st_gid) == (1000, 1000)


def _quota_row(mountd: MountdProcess, scope: str) -> QuotaScope | None:
    with session_scope(mountd.engine) as s:
        return s.exec(select(QuotaScope).where(QuotaScope.scope == scope)).first()


def test_mount_restart_brings_views_and_usage_back(tmp_path: Path) -> None:
    """After a clean stop and a start the folders are served again with their data, limits
    and usage (flushed to the store every flush_interval and at exit)."""
    with MountdProcess(tmp_path, flush_interval=0.2) as mountd:
        folder = mountd.new_folder(max_bytes=10 * MiB, max_files=50)
        (folder.rw / "a").write_bytes(b"a" * 5000)
        (folder.rw / "d").mkdir()
        wait_until(
            lambda: (
                (row := _quota_row(mountd, folder.scope)) is not None
                and (row.used_bytes, row.used_files) == (5000, 2)
            ),
            10,
            "the periodic flush",
        )
        (folder.rw / "b").write_bytes(b"b" * 100)
        mountd.restart()
        assert (folder.rw / "a").read_bytes() == b"a" * 5000
        assert os.path.isdir(folder.ro / "d")
        u = mountd.usage(folder)
        assert (u["used_bytes"], u["used_files"], u["max_bytes"], u["max_files"]) == (
            5100,
            3,
            10 * MiB,
            50,
        )
        with pytest.raises(OSError) as exc:
            (folder.rw / "big").write_bytes(b"x" * (10 * MiB))
        assert exc.value.errno == errno.EDQUOT


def test_mount_recovers_from_a_crashed_predecessor(tmp_path: Path) -> None:
    """A killed mountd leaves a dead mount (ENOTCONN); the next start clears it and serves
    again, with usage recounted by the start-up rescan."""
    mountd = MountdProcess(tmp_path)
    try:
        mountd.start()
        folder = mountd.new_folder()
        (folder.rw / "f").write_bytes(b"z" * 777)
        mountd.kill()
        with pytest.raises(OSError) as exc:
            os.listdir(folder.rw)
        assert exc.value.errno == errno.ENOTCONN
        mountd.start()
        assert (folder.rw / "f").read_bytes() == b"z" * 777
        assert mountd.usage(folder)["used_bytes"] == 777
        mountd.stop()
        assert not is_mounted(mountd.mount_point)
    finally:
        mountd.close()


def test_mount_folder_of_unknown_vfid_is_absent(mountd: MountdProcess) -> None:
    """Names under rw/ and ro/ are only the attached folders; the top is read-only."""
    assert not os.path.exists(mountd.mount_point / "rw" / uuid.uuid4().hex)
    assert sorted(os.listdir(mountd.mount_point)) == ["ro", "rw"]
    with pytest.raises(OSError) as exc:
        os.mkdir(mountd.mount_point / "rw" / "new")
    assert exc.value.errno in (errno.EPERM, errno.EACCES)


def test_mount_works_on_pyfuse3_public_api_alone(tmp_path: Path) -> None:
    """With the fast path off (as where pyfuse3 or libfuse are not verified releases),
    mountd runs pyfuse3's own loop without the low-level hooks: everything works, df then
    shows the host file system, and ``health`` says why."""
    with MountdProcess(tmp_path, env={"VFD_FUSE_FAST_PATH": "off"}) as mountd:
        status = mountd.call("health")["fast_path"]
        assert status["on"] is False
        assert status["setting"] == "off"
        assert "fuse.fast_path = off" in status["reason"]
        assert status["libfuse"] and status["libfuse_version"]  # named even when off
        folder = mountd.new_folder(max_bytes=MiB)
        (folder.rw / "d").mkdir()
        (folder.rw / "d" / "f").write_bytes(b"p" * 1000)
        assert (folder.ro / "d" / "f").read_bytes() == b"p" * 1000
        assert sorted(os.listdir(folder.rw)) == ["d"]
        with pytest.raises(OSError) as exc:
            (folder.rw / "big").write_bytes(b"x" * MiB)
        assert exc.value.errno == errno.EDQUOT
        assert os.statvfs(folder.rw).f_blocks != MiB // os.statvfs(folder.rw).f_frsize
    assert "fast path off (turned off" in mountd.log_tail(200)


def test_mount_health_reports_the_fast_path(mountd: MountdProcess) -> None:
    """``health`` says whether the fast path runs, with the libfuse mountd mapped (a real
    file, by its path) and the versions it was verified against, or why it is off."""
    status = mountd.call("health")["fast_path"]
    assert status["pyfuse3_version"] == pyfuse3.__version__
    if os.environ.get("VFD_FUSE_FAST_PATH") == "off":
        assert status["on"] is False and status["setting"] == "off"
        return
    assert status["setting"] == "auto"
    assert status["libfuse"] and Path(status["libfuse"]).is_file()
    assert os.path.basename(status["libfuse"]).startswith("libfuse3.so")
    major, minor = (int(p) for p in status["libfuse_version"].split("."))
    # on exactly where the versions are verified: a fast path that turns itself off there
    # (and the tests of its handlers, which then skip) fails here
    verified = libfuse.verify(platform.machine(), pyfuse3.__version__, (major, minor)) is None
    assert status["on"] is verified, status["reason"]


def _cpu_seconds(pid: int) -> float:
    """CPU time of every thread of ``pid`` so far (its process CPU-time clock)."""
    return time.clock_gettime((~pid << 3) | 2)


@pytest.mark.parametrize("poll", [0.0, 0.05])
def test_mount_poll_window_serves_and_then_sleeps(tmp_path: Path, poll: float) -> None:
    """With polling off or on, requests are served; after a burst mountd polls at most its
    window and then sleeps (no CPU while idle)."""
    with MountdProcess(tmp_path, poll=poll) as mountd:
        folder = mountd.new_folder()
        for i in range(50):
            (folder.rw / f"f{i}").write_bytes(b"x" * i)
        assert sorted(os.listdir(folder.rw)) == sorted(f"f{i}" for i in range(50))
        assert [os.stat(folder.rw / f"f{i}").st_size for i in range(50)] == list(range(50))
        assert mountd.proc is not None
        pid = mountd.proc.pid
        os.stat(folder.rw / "f1")  # the last request: the window starts after it
        readings = [(time.monotonic(), _cpu_seconds(pid))]

        def asleep() -> bool:
            """mountd used under 10% of a CPU since the previous reading (>= 50 ms ago)."""
            now, cpu = time.monotonic(), _cpu_seconds(pid)
            then, cpu_then = readings[-1]
            if now - then < 0.05:
                return False
            readings.append((now, cpu))
            return (cpu - cpu_then) < 0.1 * (now - then)

        # a mountd that kept polling would use a whole CPU for as long as this waits
        wait_until(asleep, 5, "mountd to stop polling and sleep")
