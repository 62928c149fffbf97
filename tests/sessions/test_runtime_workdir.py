"""The per-session /home/work on the host: made owned by the session's uid under root-owned
0711 parents, and removed without ever following a link its user planted."""

from __future__ import annotations

import dataclasses
import os
import stat
import uuid
from pathlib import Path

import pytest

from vfd.config import SessionOptions, load_config
from vfd.daemon import workdir

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")


def _config(tmp_path: Path):  # type: ignore[no-untyped-def]
    config = load_config(state_dir=tmp_path / "state", env={})
    return dataclasses.replace(
        config, sessions=dataclasses.replace(SessionOptions(), scratch_dir=tmp_path / "scratch")
    )


def test_runtime_workdir_made_owned_by_the_session_user(tmp_path: Path) -> None:
    config = _config(tmp_path)
    sid = uuid.uuid4()
    fd = workdir.make_work(config, sid, 23456, 23457)
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (23456, 23457, 0o755)
    for parent in (tmp_path / "scratch", tmp_path / "scratch" / sid.hex):
        pst = parent.lstat()
        assert (pst.st_uid, stat.S_IMODE(pst.st_mode)) == (0, 0o711), parent
    assert workdir.work_dir(config, sid) == tmp_path / "scratch" / sid.hex / "work"


def test_runtime_workdir_removal_never_follows_planted_links(tmp_path: Path) -> None:
    config = _config(tmp_path)
    sid = uuid.uuid4()
    os.close(workdir.make_work(config, sid, 23456, 23457))
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "precious").write_text("keep")
    (outside / "sub" / "also").write_text("keep")
    work = workdir.work_dir(config, sid)
    (work / "to-dir").symlink_to(outside)
    (work / "to-file").symlink_to(outside / "precious")
    (work / "deep" / "er").mkdir(parents=True)
    (work / "deep" / "er" / "link").symlink_to(outside / "sub")
    (work / "deep" / "file").write_text("mine")
    workdir.remove_work(config, sid)
    assert not work.exists()
    assert (outside / "precious").read_text() == "keep"
    assert (outside / "sub" / "also").read_text() == "keep"
    workdir.remove_work(config, sid)  # again: nothing to do
    workdir.remove_all(config, sid)
    assert not (tmp_path / "scratch" / sid.hex).exists()


def test_runtime_workdir_made_fresh_over_leftovers(tmp_path: Path) -> None:
    """A launch retried over what an earlier attempt left (a symlink where work should be)."""
    config = _config(tmp_path)
    sid = uuid.uuid4()
    os.close(workdir.make_work(config, sid, 23456, 23457))
    work = workdir.work_dir(config, sid)
    os.rmdir(work)
    os.symlink(tmp_path, work)
    fd = workdir.make_work(config, sid, 23456, 23457)
    os.close(fd)
    assert work.is_dir() and not work.is_symlink()
    assert (tmp_path / "scratch").exists()
