"""Backing layout: paths, ownership and modes of folder roots, removal."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

import pytest

from vfd.errors import ErrorCode, VfdError
from vfd.folders.layout import Scope, create_folder_dir, folder_path, remove_folder_dir


def test_layout_folder_path_fans_out(tmp_path: Path) -> None:
    owner, vfid = uuid.uuid4(), uuid.uuid4()
    scope = Scope("user", owner)
    h = vfid.hex
    assert folder_path(tmp_path, scope, vfid) == (
        tmp_path / f"user-{owner.hex}" / h[:2] / h[2:4] / h[4:]
    )
    assert str(scope) == f"user:{owner.hex}"
    assert Scope.parse(str(scope)) == scope


@pytest.mark.parametrize("text", ["user", "group:abc", "user:not-a-uuid", ":"])
def test_layout_scope_parse_rejects(text: str) -> None:
    with pytest.raises(VfdError) as info:
        Scope.parse(text)
    assert info.value.code is ErrorCode.INVALID_ARGUMENT


def test_layout_user_folder_owned_by_user(tmp_path: Path) -> None:
    path = folder_path(tmp_path, Scope("user", uuid.uuid4()), uuid.uuid4())
    create_folder_dir(path, uid=4321, gid=4322, project=False)
    st = path.stat()
    assert (st.st_uid, st.st_gid) == (4321, 4322)
    assert stat.S_IMODE(st.st_mode) == 0o755
    assert stat.S_IMODE(path.parents[2].stat().st_mode) == 0o700  # scope dir: root only


def test_layout_project_folder_is_setgid_group_writable(tmp_path: Path) -> None:
    path = folder_path(tmp_path, Scope("project", uuid.uuid4()), uuid.uuid4())
    create_folder_dir(path, uid=4321, gid=5000, project=True)
    st = path.stat()
    assert st.st_gid == 5000
    assert stat.S_IMODE(st.st_mode) == 0o2775


def test_layout_existing_dir_is_refused(tmp_path: Path) -> None:
    path = folder_path(tmp_path, Scope("user", uuid.uuid4()), uuid.uuid4())
    create_folder_dir(path, uid=0, gid=0, project=False)
    with pytest.raises(VfdError) as info:
        create_folder_dir(path, uid=0, gid=0, project=False)
    assert info.value.code is ErrorCode.VFOLDER_EXISTS


def test_layout_remove_does_not_follow_symlinks(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    host = tmp_path / "host"
    path = folder_path(host, Scope("user", uuid.uuid4()), uuid.uuid4())
    create_folder_dir(path, uid=0, gid=0, project=False)
    (path / "sub").mkdir()
    (path / "sub" / "f").write_text("data")
    os.symlink(outside, path / "link")
    remove_folder_dir(path)
    assert not path.exists()
    assert not path.parent.exists()  # empty fan-out levels go too
    assert (outside / "keep").read_text() == "x"
    remove_folder_dir(path)  # idempotent
