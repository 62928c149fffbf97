"""Project gids: a new project gets the lowest gid of ``project_gid_range`` that no other
project and no host group uses; an explicit gid that a host group has is refused unless the
group has the project's name."""

from __future__ import annotations

import grp
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from daemonapi import error, ok

from vfd.config import load_config
from vfd.errors import VfdError


def _host_group_with_free_gids_after() -> grp.struct_group:
    """A host group (gid >= 1, a name a project may have) followed by free gids."""
    for group in sorted(grp.getgrall(), key=lambda g: g.gr_gid):
        if group.gr_gid >= 1 and group.gr_name.isalnum():
            free = [g for g in range(group.gr_gid, group.gr_gid + 8) if not _is_group(g)]
            if len(free) >= 2:
                return group
    pytest.fail("no host group with free gids after it on this machine")


def _is_group(gid: int) -> bool:
    try:
        grp.getgrgid(gid)
    except KeyError:
        return False
    return True


def test_project_gids_skip_host_groups_and_other_projects(
    vfd_daemon_factory: Callable[..., AbstractContextManager[Any]],
) -> None:
    group = _host_group_with_free_gids_after()
    low, high = group.gr_gid, group.gr_gid + 7
    free = [g for g in range(low, high + 1) if not _is_group(g)]
    with vfd_daemon_factory(settings={"project_gid_range": [low, high]}) as daemon:
        http = daemon.http
        got = [
            ok(http.post("/v1/admin/projects", json={"name": f"gids{i}"}), 201)["gid"]
            for i in range(len(free))
        ]
        assert got == free  # lowest first, none a host group's, none twice
        full = http.post("/v1/admin/projects", json={"name": "gidsfull"})
        error(full, 400, "invalid_argument")
        assert f"project_gid_range [{low}, {high}]" in full.json()["error"]["message"]
        # an explicit gid: a host group's is refused, unless the group has the project's name
        refused = http.post("/v1/admin/projects", json={"name": "gidsx", "gid": group.gr_gid})
        assert error(refused, 400, "invalid_argument")["field"] == "gid"
        assert f"host group {group.gr_name!r}" in refused.json()["error"]["message"]
        named = http.post("/v1/admin/projects", json={"name": group.gr_name, "gid": group.gr_gid})
        assert ok(named, 201)["gid"] == group.gr_gid
        # an explicit gid no host group has is taken as given (even one another project has)
        again = http.post("/v1/admin/projects", json={"name": "gidsy", "gid": free[0]})
        assert ok(again, 201)["gid"] == free[0]


def test_project_gid_range_config(tmp_path: Path) -> None:
    assert load_config(state_dir=tmp_path, env={}).project_gid_range == (200000, 299999)
    (tmp_path / "vfd.toml").write_text("project_gid_range = [5000, 5999]\n")
    assert load_config(state_dir=tmp_path, env={}).project_gid_range == (5000, 5999)
    env = {"VFD_PROJECT_GID_RANGE": "7000-7100"}
    assert load_config(state_dir=tmp_path, env=env).project_gid_range == (7000, 7100)
    for bad in ("[5999, 5000]", "[0, 10]", "[1]", '"x"', "[1, true]"):
        (tmp_path / "vfd.toml").write_text(f"project_gid_range = {bad}\n")
        with pytest.raises(VfdError, match="project_gid_range: must be"):
            load_config(state_dir=tmp_path, env={})
