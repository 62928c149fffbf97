"""Every file and directory ``vfd up`` makes under a fresh state directory, with its mode and
owner — even under umask 0 — and an older store readable by every user tightened to 0600."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_up import Up, needs_fuse

from vfd.cli.up import is_mounted


@pytest.fixture
def state_dir() -> Iterator[Path]:
    parent = Path(tempfile.mkdtemp(prefix="vfdmodes-", dir="/tmp"))
    state = parent / "state"
    yield state
    if is_mounted(state / "mnt"):
        subprocess.run(["fusermount3", "-u", "-z", str(state / "mnt")], check=False)
    shutil.rmtree(parent, ignore_errors=True)


def _start(vfd_bin: Path, state_dir: Path) -> Up:
    old = os.umask(0)  # the worst umask: every mode must be set explicitly
    try:
        return Up(vfd_bin, state_dir)
    finally:
        os.umask(old)


def _listing(state_dir: Path) -> dict[str, tuple[str, str, int]]:
    """``relative path -> (type, mode, uid)`` of everything below ``state_dir`` except the
    mount's contents; folder and scope ids replaced by placeholders."""
    out: dict[str, tuple[str, str, int]] = {}
    for root, dirs, files in os.walk(state_dir):
        if Path(root) == state_dir / "mnt":
            dirs[:] = []
            continue
        for name in [*dirs, *files]:
            path = Path(root) / name
            st = os.lstat(path)
            rel = str(path.relative_to(state_dir))
            rel = re.sub(r"user-[0-9a-f]{32}", "user-SCOPE", rel)
            rel = re.sub(r"SCOPE/[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{28}", "SCOPE/AA/BB/REST", rel)
            rel = re.sub(r"SCOPE/[0-9a-f]{2}/[0-9a-f]{2}$", "SCOPE/AA/BB", rel)
            rel = re.sub(r"SCOPE/[0-9a-f]{2}$", "SCOPE/AA", rel)
            kind = (
                "dir"
                if stat.S_ISDIR(st.st_mode)
                else "socket"
                if stat.S_ISSOCK(st.st_mode)
                else "file"
            )
            out[rel] = (kind, f"{stat.S_IMODE(st.st_mode):04o}", st.st_uid)
    return out


def test_up_state_dir_holds_only_private_files(vfd_bin: Path, state_dir: Path) -> None:
    needs_fuse()
    up = _start(vfd_bin, state_dir)
    try:
        up.wait_status()
        up.cli.ok("vfolder", "create", "probe")  # a write: the store's WAL is in use
        mount_mode = stat.S_IMODE(os.stat(state_dir / "mnt").st_mode)
        assert _listing(state_dir) == {
            "hosts": ("dir", "0700", 0),
            "hosts/local": ("dir", "0711", 0),
            "hosts/local/user-SCOPE": ("dir", "0700", 0),
            "hosts/local/user-SCOPE/AA": ("dir", "0711", 0),
            "hosts/local/user-SCOPE/AA/BB": ("dir", "0711", 0),
            "hosts/local/user-SCOPE/AA/BB/REST": ("dir", "0755", 0),  # the folder: its owner's
            "mnt": ("dir", f"{mount_mode:04o}", 0),
            "run": ("dir", "0755", 0),
            "run/mountd.sock": ("socket", "0600", 0),
            "run/vfd.sock": ("socket", "0666", 0),  # any local user; SO_PEERCRED says who
            "vfd.db": ("file", "0600", 0),
            "vfd.db-shm": ("file", "0600", 0),
            "vfd.db-wal": ("file", "0600", 0),
        }
        assert mount_mode == 0o700  # the mount's top level, while mounted
        assert stat.S_IMODE(os.stat(state_dir).st_mode) == 0o755
    finally:
        up.stop()


def test_up_tightens_a_store_readable_by_every_user(vfd_bin: Path, state_dir: Path) -> None:
    needs_fuse()
    state_dir.mkdir(mode=0o755)
    for name in ("vfd.db", "vfd.db-wal"):
        (state_dir / name).write_bytes(b"")
        (state_dir / name).chmod(0o644)  # as an older vfd under umask 022 left them
    up = _start(vfd_bin, state_dir)
    try:
        up.wait_status()
        for name in ("vfd.db", "vfd.db-wal", "vfd.db-shm"):
            assert stat.S_IMODE(os.stat(state_dir / name).st_mode) == 0o600, name
        assert "vfd.db was open to every user (mode 0644); tightening it to 0600" in up.stderr
    finally:
        up.stop()
