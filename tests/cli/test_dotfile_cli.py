"""``vfd dotfile``: content in from stdin or --file and out to stdout byte for byte, scopes by
option, refusals with their codes, and the real console script reading a redirected file."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result
from vfdcli import Cli, no_crash, unique

from vfd.cli.main import app

VFD_DAEMON_SETTINGS = {"sessions": {"enabled": "off", "dotfile_max_size": 1024}}

BINARY = bytes(range(256))


@pytest.fixture
def email(vfd_daemon: Any) -> str:
    made: str = vfd_daemon.make_user()["email"]
    return made


def feed(cli: Cli, data: bytes, *args: str, as_: str | None = None) -> Result:
    """Run ``vfd ARGS`` in-process with ``data`` on stdin."""
    argv = (["--as", as_] if as_ else []) + list(args)
    result = cli.runner.invoke(app, argv, input=data, env=cli.env)
    no_crash(result)
    return result


def test_dotfile_cli_create_get_update_delete(cli: Cli, email: str) -> None:
    made = feed(cli, BINARY, "dotfile", "create", "~/.tool/conf", "--perm", "0750", as_=email)
    assert made.exit_code == 0, made.stderr
    assert "Created dotfile .tool/conf (user, mode 750, 256 bytes)" in made.stdout
    got = cli.run("dotfile", "get", ".tool/conf", as_=email)
    assert got.exit_code == 0 and got.stdout_bytes == BINARY
    listed = cli.ok("dotfile", "list", as_=email)
    assert ".tool/conf" in listed and "750" in listed
    assert [d["path"] for d in cli.json("dotfile", "list", as_=email)["dotfiles"]] == [".tool/conf"]
    changed = feed(cli, b"v2\n", "dotfile", "update", ".tool/conf", "--json", as_=email)
    assert changed.exit_code == 0, changed.stderr
    assert (json.loads(changed.stdout)["mode"], json.loads(changed.stdout)["size"]) == ("750", 3)
    record = cli.json("dotfile", "get", "/home/work/.tool/conf", as_=email)
    assert record["data"] == "djIK"  # base64 of "v2\n"
    out = cli.ok("dotfile", "delete", ".tool/conf", as_=email)
    assert "Deleted dotfile .tool/conf" in out
    cli.fails("dotfile", "get", ".tool/conf", code="dotfile_not_found", as_=email)
    cli.fails("dotfile", "delete", ".tool/conf", code="dotfile_not_found", as_=email)


def test_dotfile_cli_reads_file_option(cli: Cli, email: str, tmp_path: Path) -> None:
    source = tmp_path / "bashrc"
    source.write_bytes(b"export A=1\n")
    made = cli.json("dotfile", "create", ".bashrc", "--file", str(source), as_=email)
    assert (made["mode"], made["size"]) == ("644", 11)
    source.write_bytes(b"export A=2\n")
    cli.ok("dotfile", "update", ".bashrc", "-f", str(source), "--perm", "600", as_=email)
    got = cli.run("dotfile", "get", ".bashrc", as_=email)
    assert got.stdout_bytes == b"export A=2\n"
    assert cli.json("dotfile", "list", as_=email)["dotfiles"][0]["mode"] == "600"
    missing = str(tmp_path / "nope")
    cli.fails("dotfile", "create", ".x", "--file", missing, code="invalid_argument", as_=email)


def test_dotfile_cli_refusals(cli: Cli, email: str) -> None:
    for path, code in (
        ("/etc/profile", "invalid_path"),
        ("a/../b", "invalid_path"),
        (".ssh/authorized_keys", "reserved_name"),
    ):
        result = feed(cli, b"x", "dotfile", "create", path, as_=email)
        assert result.exit_code == 1 and result.stderr.rstrip().endswith(f"[{code}]"), (
            path,
            result.stderr,
        )
    bad_mode = feed(cli, b"x", "dotfile", "create", ".m", "--perm", "4755", as_=email)
    assert bad_mode.exit_code == 1 and "[invalid_argument]" in bad_mode.stderr
    too_big = feed(cli, b"x" * 1025, "dotfile", "create", ".big", "--json", as_=email)
    assert json.loads(too_big.stdout)["error"]["code"] == "invalid_argument"
    assert feed(cli, b"x", "dotfile", "create", ".once", as_=email).exit_code == 0
    again = feed(cli, b"x", "dotfile", "create", ".once", as_=email)
    assert again.exit_code == 1 and "[dotfile_exists]" in again.stderr
    cli.usage_error("dotfile", "list", "--project", "p", "--cluster", as_=email)


def test_dotfile_cli_project_and_cluster_scopes(cli: Cli, vfd_daemon: Any, email: str) -> None:
    project = unique("proj")
    cli.ok("admin", "project", "create", project)
    cli.ok("admin", "project", "add-member", project, email)
    denied = feed(cli, b"x", "dotfile", "create", ".condarc", "--project", project, as_=email)
    assert denied.exit_code == 1 and "[admin_required]" in denied.stderr
    made = feed(cli, b"channels: []\n", "dotfile", "create", ".condarc", "--project", project)
    assert made.exit_code == 0 and f"(project {project}, mode 644, 13 bytes)" in made.stdout
    got = cli.run("dotfile", "get", ".condarc", "--project", project, as_=email)
    assert got.stdout_bytes == b"channels: []\n"
    assert project in cli.ok("dotfile", "list", "--project", project, as_=email)
    outsider = vfd_daemon.make_user()["email"]
    cli.fails("dotfile", "list", "--project", project, code="permission_denied", as_=outsider)
    cli.fails(
        "dotfile", "delete", ".condarc", "--project", project, code="admin_required", as_=email
    )
    cli.ok("dotfile", "delete", ".condarc", "--project", project)

    path = unique(".all")
    assert feed(cli, b"all", "dotfile", "create", path, "--cluster").exit_code == 0
    assert cli.run("dotfile", "get", path, "--cluster", as_=email).stdout_bytes == b"all"
    cli.fails("dotfile", "delete", path, "--cluster", code="admin_required", as_=email)
    assert cli.json("dotfile", "delete", path, "--cluster") == {"deleted": path, "scope": "cluster"}


def test_dotfile_cli_console_script_reads_redirected_stdin(
    vfd_bin: Path, vfd_daemon: Any, email: str, tmp_path: Path
) -> None:
    source = tmp_path / "inputrc"
    source.write_bytes(b"set editing-mode vi\n")
    env = {**vfd_daemon.env, "PATH": "/usr/bin:/bin"}

    def vfd(*args: str, stdin: Any = subprocess.DEVNULL) -> subprocess.CompletedProcess[bytes]:
        argv = [str(vfd_bin), "--as", email, *args]
        return subprocess.run(argv, stdin=stdin, capture_output=True, env=env, timeout=60)

    with source.open("rb") as stream:
        made = vfd("dotfile", "create", ".inputrc", "--perm", "640", stdin=stream)
    assert made.returncode == 0, made.stderr
    got = vfd("dotfile", "get", ".inputrc")
    assert (got.returncode, got.stdout) == (0, b"set editing-mode vi\n")
    mode_only = vfd("dotfile", "update", ".inputrc", "--perm", "600", "--json")
    assert json.loads(mode_only.stdout)["mode"] == "600", mode_only.stderr
    assert vfd("dotfile", "get", ".inputrc").stdout == b"set editing-mode vi\n"
    emptied = vfd("dotfile", "update", ".inputrc", "--file", "/dev/null", "--json")
    assert json.loads(emptied.stdout)["size"] == 0, emptied.stderr
