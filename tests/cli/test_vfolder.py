"""``vfd vfolder`` folder commands end to end: CLI -> unix socket -> daemon -> store.

Every test runs on SQLite and on PostgreSQL (the ``database_url`` fixture behind
``vfd_daemon``). Tests act as fresh users (``--as``) so that they share one daemon without
sharing names; the "Done means" sequence runs as root, exactly as written in the issue.
"""

from __future__ import annotations

from typing import Any

import pytest
from vfdcli import Cli, unique


@pytest.fixture
def user(vfd_daemon: Any) -> str:
    """A fresh user's email."""
    email: str = vfd_daemon.make_user()["email"]
    return email


def test_vfolder_done_means_sequence(cli: Cli) -> None:
    out = cli.ok("vfolder", "create", "mydata1", "local")
    assert "Created folder mydata1 on local" in out
    folder_id = cli.json("vfolder", "info", "mydata1")["id"]
    assert folder_id in out

    out = cli.ok("vfolder", "list")
    assert "mydata1" in out and folder_id[:8] in out

    out = cli.ok("vfolder", "list-hosts")
    assert "local" in out

    assert "Renamed folder mydata1 to data2" in cli.ok("vfolder", "rename", "mydata1", "data2")
    assert "trash" in cli.ok("vfolder", "delete", "data2")

    trash = cli.ok("vfolder", "list", "--trash")
    assert "data2" in trash and "delete-pending" in trash
    assert "data2" not in cli.ok("vfolder", "list")

    assert "Restored folder data2" in cli.ok("vfolder", "restore", "data2")
    assert "data2" in cli.ok("vfolder", "list")

    cli.fails("vfolder", "purge", "data2", "--confirm", "wrong", code="confirmation_mismatch")
    assert cli.json("vfolder", "info", "data2")["status"] == "ready"

    cli.ok("vfolder", "delete", "data2")
    out = cli.ok("vfolder", "purge", "data2", "--confirm", "data2")
    assert "Purged folder data2" in out and folder_id in out
    cli.fails("vfolder", "info", "data2", code="vfolder_not_found")
    assert "data2" not in cli.ok("vfolder", "list", "--trash")
    again = cli.json("vfolder", "create", "data2", "local")
    assert again["name"] == "data2" and again["id"] != folder_id
    cli.ok("vfolder", "delete", "data2")
    cli.ok("vfolder", "purge", "data2", "--confirm", "data2")


def test_vfolder_create_json_is_the_folder(cli: Cli, user: str) -> None:
    name = unique("made")
    folder = cli.json("vfolder", "create", name, "--usage-mode", "model", "--cloneable", as_=user)
    assert folder["name"] == name
    assert folder["host"] == "local"  # the default host
    assert folder["usage_mode"] == "model"
    assert folder["cloneable"] is True
    assert folder["ownership"] == "user" and folder["owner"] == user
    assert folder["permission"] == "wd" and folder["status"] == "ready"
    assert cli.json("vfolder", "info", name, as_=user)["id"] == folder["id"]


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("x" * 65, "name_too_long"),
        ("", "invalid_name"),
        (".jupyter", "reserved_name"),
        (".bashrc", "reserved_name"),
        ("../x", "invalid_name"),
        ("..", "invalid_name"),
        (" padded", "invalid_name"),
    ],
    ids=["long", "empty", "reserved", "reserved-rc", "dotdot-slash", "dotdot", "space"],
)
def test_vfolder_create_rejects_bad_names(cli: Cli, user: str, name: str, code: str) -> None:
    error = cli.fails("vfolder", "create", name, as_=user, code=code)
    assert error["message"]
    assert cli.json("vfolder", "list", as_=user)["vfolders"] == []


def test_vfolder_create_duplicate_name_is_refused_even_in_trash(cli: Cli, user: str) -> None:
    name = unique("dup")
    cli.ok("vfolder", "create", name, as_=user)
    cli.fails("vfolder", "create", name, as_=user, code="vfolder_exists")
    cli.ok("vfolder", "delete", name, as_=user)
    cli.fails("vfolder", "create", name, as_=user, code="vfolder_exists")


def test_vfolder_create_unknown_host_is_refused(cli: Cli, user: str) -> None:
    error = cli.fails(
        "vfolder", "create", unique("h"), "nosuchhost", as_=user, code="host_not_found"
    )
    assert "nosuchhost" in error["message"]


def test_vfolder_create_bad_choice_is_a_usage_error(cli: Cli, user: str) -> None:
    assert "usage-mode" in cli.usage_error("vfolder", "create", "x", "--usage-mode", "nope")
    assert "permission" in cli.usage_error("vfolder", "create", "x", "--permission", "all")
    cli.usage_error("vfolder", "create")  # NAME is required


def test_vfolder_list_table_has_every_column(cli: Cli, user: str) -> None:
    name = unique("cols")
    folder = cli.json("vfolder", "create", name, as_=user)
    out = cli.ok("vfolder", "list", as_=user)
    header = out.splitlines()[0].split()
    for column in ("id", "name", "host", "type", "usage", "mode", "permission", "status", "owner"):
        assert column in header
    row = next(line for line in out.splitlines() if name in line).split()
    assert row == [folder["id"][:8], name, "local", "user", "general", "wd", "ready", user]


def test_vfolder_list_json_and_empty_table(cli: Cli, user: str) -> None:
    assert cli.json("vfolder", "list", as_=user) == {"vfolders": []}
    assert "no folders" in cli.ok("vfolder", "list", as_=user)
    assert "trash is empty" in cli.ok("vfolder", "list", "--trash", as_=user)


def test_vfolder_list_automount_shows_only_dot_folders(cli: Cli, user: str) -> None:
    cli.ok("vfolder", "create", ".local", as_=user)
    cli.ok("vfolder", "create", "plain", as_=user)
    names = [f["name"] for f in cli.json("vfolder", "list", "--automount", as_=user)["vfolders"]]
    assert names == [".local"]
    assert cli.json("vfolder", "info", ".local", as_=user)["automount"] is True
    out = cli.ok("vfolder", "list", "--automount", as_=user)
    assert ".local" in out and "plain" not in out


def test_vfolder_info_shows_one_folder(cli: Cli, user: str) -> None:
    name = "with space %2F? #"
    folder = cli.json("vfolder", "create", name, as_=user)
    out = cli.ok("vfolder", "info", name, as_=user)
    for text in (name, folder["id"], "local", user, "general", "ready", folder["scope"]):
        assert text in out
    cli.fails("vfolder", "info", unique("missing"), as_=user, code="vfolder_not_found")


def test_vfolder_rename_checks_the_new_name(cli: Cli, user: str) -> None:
    old, taken = unique("old"), unique("taken")
    cli.ok("vfolder", "create", old, as_=user)
    cli.ok("vfolder", "create", taken, as_=user)
    cli.fails("vfolder", "rename", old, taken, as_=user, code="vfolder_exists")
    cli.fails("vfolder", "rename", old, "../x", as_=user, code="invalid_name")
    cli.fails("vfolder", "rename", old, "y" * 65, as_=user, code="name_too_long")
    cli.fails("vfolder", "rename", old, ".jupyter", as_=user, code="reserved_name")
    new = unique("new")
    assert cli.json("vfolder", "rename", old, new, as_=user)["name"] == new
    cli.fails("vfolder", "info", old, as_=user, code="vfolder_not_found")


def test_vfolder_update_changes_permission_and_cloneable(cli: Cli, user: str) -> None:
    name = unique("upd")
    cli.ok("vfolder", "create", name, as_=user)
    out = cli.ok("vfolder", "update", name, "--cloneable", as_=user)
    assert f"Updated folder {name}" in out and "cloneable" in out
    folder = cli.json("vfolder", "update", name, "--permission", "ro", "--no-cloneable", as_=user)
    assert folder["cloneable"] is False and folder["default_permission"] == "ro"
    assert "nothing to change" in cli.usage_error("vfolder", "update", name, as_=user)


def test_vfolder_trash_transitions_are_checked(cli: Cli, user: str) -> None:
    name = unique("trash")
    cli.ok("vfolder", "create", name, as_=user)
    cli.fails("vfolder", "restore", name, as_=user, code="invalid_status")
    cli.fails("vfolder", "purge", name, "--confirm", name, as_=user, code="invalid_status")
    assert cli.json("vfolder", "delete", name, as_=user)["status"] == "delete-pending"
    cli.fails("vfolder", "delete", name, as_=user, code="invalid_status")
    trashed = cli.json("vfolder", "list", "--trash", as_=user)["vfolders"]
    assert [f["name"] for f in trashed] == [name]
    assert cli.json("vfolder", "restore", name, as_=user)["status"] == "ready"
    cli.ok("vfolder", "delete", name, as_=user)
    purged = cli.json("vfolder", "purge", name, "--confirm", name, as_=user)["purged"]
    assert purged["name"] == name
    cli.fails("vfolder", "restore", name, as_=user, code="vfolder_not_found")
    cli.usage_error("vfolder", "purge", name)  # --confirm is required


def test_vfolder_list_hosts_shows_capacity_and_quota(cli: Cli, user: str) -> None:
    hosts = cli.json("vfolder", "list-hosts", as_=user)["hosts"]
    local = next(h for h in hosts if h["name"] == "local")
    assert local["capacity"]["total_bytes"] > 0
    out = cli.ok("vfolder", "list-hosts", as_=user)
    assert "local" in out and "iB" in out  # human sizes
    assert "unlimited" in out  # no quota under the default policy


def test_vfolder_storage_status_counts_own_folders(cli: Cli, user: str) -> None:
    before = cli.json("vfolder", "storage-status", as_=user)
    assert before["created"] == 0
    cli.ok("vfolder", "create", unique("count"), as_=user)
    after = cli.json("vfolder", "storage-status", as_=user)
    assert after["created"] == 1
    assert set(after) >= {"created", "limit", "project_folders", "invited_folders"}
    out = cli.ok("vfolder", "storage-status", as_=user)
    assert "1 / unlimited" in out


def test_vfolder_user_cannot_touch_another_users_folder(cli: Cli, vfd_daemon: Any) -> None:
    owner, other = vfd_daemon.make_user()["email"], vfd_daemon.make_user()["email"]
    name = unique("private")
    cli.ok("vfolder", "create", name, as_=owner)
    for args in (
        ("info", name),
        ("rename", name, unique("stolen")),
        ("update", name, "--cloneable"),
        ("delete", name),
        ("invite", name, other, "--permission", "rw"),
    ):
        cli.fails("vfolder", *args, as_=other, code="vfolder_not_found")
    assert cli.json("vfolder", "list", as_=other)["vfolders"] == []
    cli.ok("vfolder", "delete", name, as_=owner)
    cli.fails("vfolder", "restore", name, as_=other, code="vfolder_not_found")
    cli.fails("vfolder", "purge", name, "--confirm", name, as_=other, code="vfolder_not_found")
    assert cli.json("vfolder", "restore", name, as_=owner)["status"] == "ready"
