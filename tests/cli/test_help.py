"""Every command and option of ``vfd`` is documented, and every API command has ``--json``.

The command tree is walked from the root, so a command added later without help text (or
without ``--json``) fails here by name.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from vfd.cli.main import app

SERVERS = {("up",), ("daemon",), ("mountd",)}  # run in the foreground, no API result
INTERACTIVE = {("session", "shell")}  # a terminal, not a result to print as JSON


def _walk(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _walk(sub, (*path, name))


COMMANDS = list(_walk(typer.main.get_command(app)))
LEAVES = [(path, cmd) for path, cmd in COMMANDS if not hasattr(cmd, "commands")]
COMMAND_IDS = [" ".join(path) or "vfd" for path, _ in COMMANDS]


def test_help_tree_has_every_command_of_the_issue() -> None:
    paths = {" ".join(path) for path, _ in LEAVES}
    expected = {
        "status", "daemon", "mountd", "up",
        "vfolder create", "vfolder list", "vfolder info", "vfolder list-hosts",
        "vfolder storage-status", "vfolder rename", "vfolder update", "vfolder delete",
        "vfolder restore", "vfolder purge", "vfolder invite", "vfolder invitations",
        "vfolder accept", "vfolder reject", "vfolder leave", "vfolder members",
        "vfolder set-member-permission",
        "vfolder unset-member-permission",
        "admin user create", "admin user list", "admin user update", "admin user deactivate",
        "admin project create", "admin project add-member", "admin project remove-member",
        "admin project list", "admin policy create", "admin policy update",
        "admin policy assign", "admin policy list", "admin host list", "admin token create",
    }  # fmt: skip
    assert expected <= paths, expected - paths


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=COMMAND_IDS)
def test_help_every_command_and_option_is_documented(path: tuple[str, ...], command: Any) -> None:
    assert (command.help or "").strip(), f"`vfd {' '.join(path)}` has no help text"
    for param in command.params:
        assert (getattr(param, "help", None) or "").strip(), (
            f"`vfd {' '.join(path)}`: {param.name} has no help text"
        )


API_LEAVES = [(path, cmd) for path, cmd in LEAVES if path not in SERVERS | INTERACTIVE]


@pytest.mark.parametrize(("path", "command"), API_LEAVES, ids=[" ".join(p) for p, _ in API_LEAVES])
def test_help_every_api_command_takes_json(path: tuple[str, ...], command: Any) -> None:
    assert "--json" in {opt for param in command.params for opt in param.opts}


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=COMMAND_IDS)
def test_help_option_prints_and_exits_0(path: tuple[str, ...], command: Any) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "Usage: vfd" in result.output
    first_line = command.help.strip().splitlines()[0]
    assert first_line[:30] in " ".join(result.output.split())


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=COMMAND_IDS)
def test_help_flags_show_no_type_placeholder(path: tuple[str, ...], command: Any) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output, result.output
    flags = [p for p in command.params if getattr(p, "is_flag", False)]
    for flag in flags:  # the flag is still listed, with its help
        assert flag.opts[0] in result.output


def test_help_version_option() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("vfd ")
