"""``vfd admin node|resource-group|preset`` and the session limits of ``vfd admin policy``,
end to end against a daemon (SQLite and PostgreSQL)."""

from __future__ import annotations

import time
from typing import Any

from vfdcli import Cli, unique

# a node is dead after three silent intervals: 1 s, not less, so that a loaded machine (a
# stalled store, a busy CPU) does not make this node look dead for a moment
VFD_DAEMON_SETTINGS = {"sessions": {"node": "node-a", "heartbeat_interval": 1.0}}


def _email() -> str:
    return f"{unique('u')}@example.com"


def test_admin_node_list_shows_this_node_alive(cli: Cli) -> None:
    nodes = cli.json("admin", "node", "list")["nodes"]
    node = next(n for n in nodes if n["id"] == "node-a")
    assert node["group"] == "default" and node["alive"] is True
    assert node["cpu"] > 0 and node["memory"] > 0
    assert node["sessions"] == 0 and node["used_cpu"] == 0 and node["used_memory"] == 0
    first = node["heartbeat_at"]
    deadline = time.monotonic() + 10
    while node["heartbeat_at"] == first:  # it heartbeats every second
        assert time.monotonic() < deadline, "no heartbeat in 10 s"
        time.sleep(0.1)
        node = next(n for n in cli.json("admin", "node", "list")["nodes"] if n["id"] == "node-a")
    assert node["heartbeat_age"] < 5
    line = next(line for line in cli.ok("admin", "node", "list").splitlines() if "node-a" in line)
    assert "default" in line and "yes" in line and "ago" in line


def test_admin_node_set_group(cli: Cli) -> None:
    group = unique("grp")
    cli.ok("admin", "resource-group", "create", group)
    out = cli.ok("admin", "node", "set-group", "node-a", group)
    assert f"Node node-a is in resource group {group}" in out
    listed = {g["name"]: g for g in cli.json("admin", "resource-group", "list")["groups"]}
    assert listed[group]["nodes"] == ["node-a"]
    cli.fails("admin", "resource-group", "delete", group, code="group_in_use")
    cli.fails("admin", "node", "set-group", "node-a", unique("none"), code="group_not_found")
    cli.fails("admin", "node", "set-group", unique("nonode"), group, code="node_not_found")
    assert cli.json("admin", "node", "set-group", "node-a", "default")["group"] == "default"
    cli.ok("admin", "resource-group", "delete", group)


def test_admin_resource_group_crud(cli: Cli, vfd_daemon: Any) -> None:
    name, user = unique("grp"), vfd_daemon.make_user()["email"]
    project = unique("team")
    cli.ok("admin", "project", "create", project)
    made = cli.json(
        "admin",
        "resource-group",
        "create",
        name,
        "--scheduler",
        "fifo",
        "--description",
        "big jobs",
        "--allow-user",
        user,
        "--allow-project",
        project,
    )
    assert made == {
        "name": name,
        "scheduler": "fifo",
        "description": "big jobs",
        "allowed_users": [user],
        "allowed_projects": [project],
        "open": False,
        "nodes": [],
        "live_sessions": 0,
    }
    cli.fails("admin", "resource-group", "create", name, code="group_exists")
    row = next(
        line for line in cli.ok("admin", "resource-group", "list").splitlines() if name in line
    )
    assert "fifo" in row and user in row and "big jobs" in row

    opened = cli.json("admin", "resource-group", "update", name, "--open")
    assert opened["open"] is True and opened["allowed_users"] == []
    other = vfd_daemon.make_user()["email"]
    changed = cli.json("admin", "resource-group", "update", name, "--allow-user", other)
    assert changed["allowed_users"] == [other] and changed["allowed_projects"] == []
    out = cli.ok("admin", "resource-group", "update", name, "--description", "small")
    assert f"Updated resource group {name}" in out
    assert "nothing to change" in cli.usage_error("admin", "resource-group", "update", name)

    assert f"Deleted resource group {name}" in cli.ok("admin", "resource-group", "delete", name)
    cli.fails("admin", "resource-group", "delete", name, code="group_not_found")
    cli.fails("admin", "resource-group", "delete", "default", code="group_in_use")


def test_admin_resource_group_refuses_bad_input(cli: Cli) -> None:
    error = cli.fails(
        "admin", "resource-group", "create", unique("g"), "--scheduler", "nosuch",
        code="invalid_argument",
    )  # fmt: skip
    assert "fifo" in error["details"]["installed"] and "nosuch" in error["message"]
    cli.fails("admin", "resource-group", "create", "bad name", code="invalid_name")
    cli.fails(
        "admin", "resource-group", "create", unique("g"), "--allow-user", _email(),
        code="user_not_found",
    )  # fmt: skip
    cli.fails(
        "admin", "resource-group", "create", unique("g"), "--allow-project", unique("none"),
        code="project_not_found",
    )  # fmt: skip
    cli.fails("admin", "resource-group", "update", unique("none"), "--open", code="group_not_found")


def test_admin_preset_crud(cli: Cli) -> None:
    name = unique("small")
    out = cli.ok("admin", "preset", "create", name, "--cpu", "0.5", "--mem", "256m")
    assert f"Created preset {name} (0.5 cpu, memory 256 MiB)" in out
    cli.fails("admin", "preset", "create", name, "--cpu", "1", code="preset_exists")
    listed = cli.json("admin", "preset", "list")["presets"]
    assert {"name": name, "cpu": 0.5, "memory": 256 * 2**20, "slots": {}} in listed
    cli.fails("admin", "preset", "create", unique("p"), "--cpu", "0", code="invalid_argument")
    cli.fails(
        "admin", "preset", "create", unique("p"), "--cpu", "1", "--mem", "1k",
        code="invalid_argument",
    )  # fmt: skip
    cli.usage_error("admin", "preset", "create", unique("p"), "--cpu", "nan")
    cli.usage_error("admin", "preset", "create", unique("p"))
    assert f"Deleted preset {name}" in cli.ok("admin", "preset", "delete", name)
    cli.fails("admin", "preset", "delete", name, code="preset_not_found")


def test_admin_policy_session_limits(cli: Cli) -> None:
    name, group = unique("pol"), unique("grp")
    cli.ok("admin", "resource-group", "create", group)
    made = cli.json(
        "admin", "policy", "create", name, "--max-sessions", "2", "--max-cpu", "1.5",
        "--max-mem", "1g", "--idle-timeout", "30m", "--max-lifetime", "1.5h",
        "--allow-image", "vfd-test/*", "--allow-image", "busybox:*", "--allow-group", group,
    )  # fmt: skip
    assert made["max_sessions"] == 2 and made["max_session_cpu"] == 1.5
    assert made["max_session_memory"] == 2**30
    assert made["idle_timeout"] == 1800 and made["max_lifetime"] == 5400
    assert made["allowed_images"] == ["vfd-test/*", "busybox:*"]
    assert made["allowed_groups"] == [group]
    info = cli.ok("admin", "policy", "info", name)
    assert "sessions: 2" in info and "idle timeout: 30m" in info and "lifetime: 1h30m" in info
    assert f"groups: {group}" in info and "vfd-test/*" in info
    row = next(line for line in cli.ok("admin", "policy", "list").splitlines() if name in line)
    assert "1h30m" in row and "1 GiB" in row

    updated = cli.json(
        "admin", "policy", "update", name, "--any-image", "--idle-timeout", "0",
        "--max-cpu", "4",
    )  # fmt: skip
    assert updated["allowed_images"] == [] and updated["idle_timeout"] == 0
    assert updated["max_session_cpu"] == 4 and updated["max_sessions"] == 2
    info = cli.ok("admin", "policy", "info", name)
    assert "images: any" in info and "idle timeout: never" in info

    cli.fails(
        "admin", "policy", "update", name, "--allow-group", unique("none"),
        code="group_not_found",
    )  # fmt: skip
    cli.fails("admin", "policy", "info", unique("none"), code="policy_not_found")
    cli.usage_error("admin", "policy", "update", name, "--idle-timeout", "soon")
    cli.usage_error("admin", "policy", "update", name, "--max-cpu", "-1")
    cli.usage_error("admin", "policy", "update", name, "--any-image", "--allow-image", "x")


def test_admin_resource_commands_need_an_admin(cli: Cli, vfd_daemon: Any) -> None:
    user = vfd_daemon.make_user()["email"]
    for args in (
        ("node", "list"),
        ("node", "set-group", "node-a", "default"),
        ("resource-group", "list"),
        ("resource-group", "create", unique("g")),
        ("resource-group", "delete", "default"),
        ("preset", "create", unique("p"), "--cpu", "1"),
        ("preset", "delete", "x"),
        ("policy", "info", "x"),
    ):
        cli.fails("admin", *args, as_=user, code="admin_required")
    assert "presets" in cli.json("admin", "preset", "list", as_=user)
