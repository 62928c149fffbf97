"""``vfd.safedirs``: directories made with explicit modes whatever the umask, unsafe ones
tightened (vfd's own) or refused (their ancestors), the store file private."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from vfd import safedirs
from vfd.errors import ErrorCode, VfdError


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_zero() -> Iterator[None]:
    """mountd's umask while it serves."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_safedirs_creates_with_explicit_modes_under_umask_zero(
    tmp_path: Path, umask_zero: None
) -> None:
    leaf = tmp_path / "a" / "b" / "run"
    assert safedirs.ensure_dir(leaf, 0o755, parent_mode=0o700) == leaf
    assert (_mode(tmp_path / "a"), _mode(tmp_path / "a" / "b"), _mode(leaf)) == (
        0o700,
        0o700,
        0o755,
    )
    safedirs.ensure_socket_dir(tmp_path / "s" / "vfd.sock")
    assert _mode(tmp_path / "s") == 0o755


def test_safedirs_leaves_safe_existing_directories_alone(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # world-writable with the sticky bit, like /tmp: safe
    mine = shared / "mine"
    mine.mkdir()
    mine.chmod(0o750)
    safedirs.ensure_dir(mine, 0o700)
    assert (_mode(shared), _mode(mine)) == (0o1777, 0o750)


def test_safedirs_tightens_an_unsafe_directory_of_its_own(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    run.chmod(0o777)  # as an older vfd made it
    with caplog.at_level(logging.WARNING, logger="vfd.safedirs"):
        safedirs.ensure_dir(run, 0o755)
    assert _mode(run) == 0o755
    assert f"{run} was writable by every user (mode 0777); tightening it to 0755" in caplog.text


def test_safedirs_refuses_an_unsafe_ancestor(tmp_path: Path) -> None:
    parent = tmp_path / "open"
    parent.mkdir()
    parent.chmod(0o777)
    with pytest.raises(VfdError) as caught:
        safedirs.ensure_dir(parent / "vfd" / "run", 0o755)
    assert caught.value.code is ErrorCode.CONFIG_INVALID
    assert f"{parent} is writable by every user (mode 0777, no sticky bit)" in str(caught.value)
    assert caught.value.details == {"path": str(parent / "vfd" / "run"), "directory": str(parent)}
    assert not (parent / "vfd").exists()
    assert _mode(parent) == 0o777  # not vfd's to change


def test_safedirs_follows_a_symlinked_ancestor(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to("real")  # like /var/run -> /run
    safedirs.ensure_dir(tmp_path / "link" / "vfd", 0o755)
    assert _mode(tmp_path / "real" / "vfd") == 0o755


def test_safedirs_refuses_a_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(NotADirectoryError):
        safedirs.ensure_dir(tmp_path / "f" / "run", 0o755)


def test_safedirs_store_file_private_and_tightened(tmp_path: Path, umask_zero: None) -> None:
    db = tmp_path / "vfd.db"
    safedirs.ensure_private_file(db)
    assert (db.read_bytes(), _mode(db)) == (b"", 0o600)
    db.write_bytes(b"data")
    db.chmod(0o666)  # as an older mountd made it
    wal = tmp_path / "vfd.db-wal"
    wal.write_bytes(b"")
    wal.chmod(0o666)
    safedirs.ensure_private_file(db)
    assert (db.read_bytes(), _mode(db), _mode(wal)) == (b"data", 0o600, 0o600)
    db.chmod(0o640)  # readable by a group on purpose: not unsafe, left alone
    safedirs.ensure_private_file(db)
    assert _mode(db) == 0o640
    for path in (db, wal):  # readable by every user (an older umask 022): tightened
        path.chmod(0o644)
    safedirs.ensure_private_file(db)
    assert (_mode(db), _mode(wal)) == (0o600, 0o600)
