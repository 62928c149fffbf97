"""``vfd admin`` end to end, and resource policy limits as users meet them through the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from vfdcli import Cli, unique


def _email() -> str:
    return f"{unique('u')}@example.com"


def test_admin_user_create_list_update(cli: Cli) -> None:
    email = _email()
    out = cli.ok("admin", "user", "create", email, "--uid", "2345", "--gid", "2346")
    assert f"Created user {email} (uid 2345, gid 2346, user, active" in out
    listed = cli.json("admin", "user", "list")["users"]
    assert any(u["email"] == email and u["uid"] == 2345 for u in listed)
    row = next(line for line in cli.ok("admin", "user", "list").splitlines() if email in line)
    assert "2345" in row and "active" in row

    updated = cli.json("admin", "user", "update", email, "--username", "renamed", "--gid", "99")
    assert updated["username"] == "renamed" and updated["gid"] == 99
    out = cli.ok("admin", "user", "update", email, "--role", "admin")
    assert f"Updated user {email}" in out and "admin" in out
    assert "nothing to change" in cli.usage_error("admin", "user", "update", email)
    cli.usage_error("admin", "user", "update", email, "--role", "root")
    cli.usage_error("admin", "user", "create", _email(), "--uid", "-1")


def test_admin_user_create_json_and_conflicts(cli: Cli) -> None:
    email = _email()
    user = cli.json("admin", "user", "create", email, "--username", "json", "--role", "user")
    assert user["email"] == email and user["username"] == "json" and user["role"] == "user"
    cli.fails("admin", "user", "create", email, code="user_exists")
    cli.fails("admin", "user", "update", _email(), "--gid", "1", code="user_not_found")
    cli.fails(
        "admin", "user", "create", _email(), "--policy", unique("nop"), code="policy_not_found"
    )


def test_admin_user_deactivate_locks_the_user_out(cli: Cli) -> None:
    email = _email()
    cli.ok("admin", "user", "create", email)
    cli.ok("vfolder", "list", as_=email)
    out = cli.ok("admin", "user", "deactivate", email)
    assert f"Deactivated user {email}" in out
    cli.fails("vfolder", "list", as_=email, code="user_inactive")
    assert cli.json("admin", "user", "update", email, "--status", "active")["status"] == "active"
    cli.ok("vfolder", "list", as_=email)
    assert cli.json("admin", "user", "deactivate", email)["status"] == "inactive"


def test_admin_commands_need_an_admin(cli: Cli, vfd_daemon: Any) -> None:
    user = vfd_daemon.make_user()["email"]
    for args in (
        ("user", "list"),
        ("user", "create", _email()),
        ("project", "list"),
        ("policy", "list"),
        ("host", "list"),
        ("token", "create", user, "--name", "t"),
    ):
        cli.fails("admin", *args, as_=user, code="admin_required")


def test_admin_project_commands(cli: Cli, vfd_daemon: Any) -> None:
    name, member = unique("team"), vfd_daemon.make_user()["email"]
    project = cli.json(
        "admin", "project", "create", name, "--description", "a team", "--gid", "4321"
    )
    assert project["name"] == name and project["gid"] == 4321 and project["members"] == []
    cli.fails("admin", "project", "create", name, code="project_exists")

    out = cli.ok("admin", "project", "add-member", name, member)
    assert f"Added {member} to project {name}" in out
    cli.fails("admin", "project", "add-member", name, member, code="already_member")
    row = next(line for line in cli.ok("admin", "project", "list").splitlines() if name in line)
    assert "a team" in row and "4321" in row and member in row
    listed = cli.json("admin", "project", "list")["projects"]
    assert next(p for p in listed if p["name"] == name)["members"] == [member]

    assert cli.json("admin", "project", "remove-member", name, member)["members"] == []
    cli.fails("admin", "project", "remove-member", name, member, code="not_a_member")
    cli.fails("admin", "project", "add-member", unique("none"), member, code="project_not_found")
    assert cli.json("admin", "project", "add-member", name, member)["members"] == [member]
    cli.ok("admin", "project", "remove-member", name, member)
    assert "no members" in cli.ok("admin", "project", "create", unique("empty"))


def test_admin_policy_commands_parse_sizes(cli: Cli, vfd_daemon: Any) -> None:
    name = unique("pol")
    policy = cli.json(
        "admin", "policy", "create", name, "--max-vfolder-count", "3",
        "--max-quota-scope-size", "1.5T", "--allowed-hosts", "local",
    )  # fmt: skip
    assert policy == {
        "name": name,
        "max_vfolder_count": 3,
        "max_quota_scope_size": 3 * 2**39,
        "allowed_hosts": ["local"],
        "max_sessions": 0,
        "max_session_cpu": 0,
        "max_session_memory": 0,
        "idle_timeout": 0,
        "max_lifetime": 0,
        "allowed_images": [],
        "allowed_groups": [],
        "max_storage_sessions": 2,
        "max_slots": {},
    }
    cli.fails("admin", "policy", "create", name, code="policy_exists")
    storage = cli.json("admin", "policy", "update", name, "--max-storage-sessions", "5")
    assert storage["max_storage_sessions"] == 5
    assert "storage sessions: 5" in cli.ok("admin", "policy", "update", name, "--max-sessions", "0")
    out = cli.ok("admin", "policy", "update", name, "--max-quota-scope-size", "512M")
    assert (
        f"Updated policy {name} (folders: 3, quota: 512 MiB, hosts: local; sessions: unlimited"
        in out
    )
    updated = cli.json("admin", "policy", "update", name, "--allowed-hosts", "")
    assert updated["allowed_hosts"] == [] and updated["max_quota_scope_size"] == 512 * 2**20
    row = next(line for line in cli.ok("admin", "policy", "list").splitlines() if name in line)
    assert "512 MiB" in row and "all" in row
    assert any(p["name"] == name for p in cli.json("admin", "policy", "list")["policies"])

    bad = cli.usage_error("admin", "policy", "update", name, "--max-quota-scope-size", "10X")
    assert "10X" in bad and "not a size" in bad
    assert "nothing to change" in cli.usage_error("admin", "policy", "update", name)
    cli.fails(
        "admin",
        "policy",
        "update",
        unique("none"),
        "--max-vfolder-count",
        "1",
        code="policy_not_found",
    )

    user = vfd_daemon.make_user()["email"]
    out = cli.ok("admin", "policy", "assign", name, user)
    assert f"Assigned policy {name} to {user}" in out
    assert cli.json("admin", "policy", "assign", name, user)["resource_policy"] == name
    cli.fails("admin", "policy", "assign", name, _email(), code="user_not_found")


def test_admin_policy_max_folder_count_counts_trash(cli: Cli, vfd_daemon: Any) -> None:
    policy, user = unique("one"), vfd_daemon.make_user()["email"]
    cli.ok("admin", "policy", "create", policy, "--max-vfolder-count", "1")
    cli.ok("admin", "policy", "assign", policy, user)
    first = unique("first")
    cli.ok("vfolder", "create", first, as_=user)
    cli.fails("vfolder", "create", unique("second"), as_=user, code="folder_limit_reached")
    assert "1 / 1" in cli.ok("vfolder", "storage-status", as_=user)
    cli.ok("vfolder", "delete", first, as_=user)
    cli.fails("vfolder", "create", unique("second"), as_=user, code="folder_limit_reached")
    cli.ok("vfolder", "purge", first, "--confirm", first, as_=user)
    cli.ok("vfolder", "create", unique("second"), as_=user)


def test_admin_host_list_and_token_create(cli: Cli, vfd_daemon: Any) -> None:
    hosts = cli.json("admin", "host", "list")["hosts"]
    local = next(h for h in hosts if h["name"] == "local")
    assert local["path"] == str(vfd_daemon.config.hosts["local"])
    out = cli.ok("admin", "host", "list")
    assert "local" in out and str(vfd_daemon.config.hosts["local"]) in out

    user = vfd_daemon.make_user()["email"]
    token = cli.json("admin", "token", "create", user, "--name", "laptop")
    assert token["name"] == "laptop" and token["token"]
    out = cli.ok("admin", "token", "create", user, "--name", "ci")
    assert "shown only this once" in out
    assert out.strip().splitlines()[-1].strip() not in ("", token["token"])
    cli.usage_error("admin", "token", "create", user)  # --name is required
    cli.fails("admin", "token", "create", _email(), "--name", "x", code="user_not_found")


@pytest.fixture
def two_hosts(vfd_daemon_factory: Any, tmp_path: Path) -> Any:
    """A private daemon with the storage hosts ``local`` and ``other``."""
    hosts = {"local": str(tmp_path / "local"), "other": str(tmp_path / "other")}
    with vfd_daemon_factory(settings={"hosts": hosts}) as daemon:
        yield daemon


def test_admin_policy_allowed_hosts_limit_where_folders_go(two_hosts: Any) -> None:
    cli = Cli(two_hosts.env)
    policy, user = unique("hosts"), two_hosts.make_user()["email"]
    cli.ok("admin", "policy", "create", policy, "--allowed-hosts", "other")
    cli.ok("admin", "policy", "assign", policy, user)
    cli.fails("vfolder", "create", unique("f"), "local", as_=user, code="host_not_allowed")
    cli.fails("vfolder", "create", unique("f"), "nosuch", as_=user, code="host_not_found")
    assert cli.json("vfolder", "create", unique("f"), "other", as_=user)["host"] == "other"
    hosts = {h["name"]: h["allowed"] for h in cli.json("vfolder", "list-hosts", as_=user)["hosts"]}
    assert hosts == {"local": False, "other": True}
    assert {h["name"] for h in cli.json("admin", "host", "list")["hosts"]} == {"local", "other"}
