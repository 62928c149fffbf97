"""The session commands are in the command tree, say what they do, and parse as documented:
``vfd run``'s options go before IMAGE and everything after it is the command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner
from vfdcli import run_vfd

from vfd.cli.main import app

ROOT: Any = typer.main.get_command(app)
SESSION_COMMANDS = [
    ("run",),
    ("session", "list"),
    ("session", "info"),
    ("session", "logs"),
    ("session", "exec"),
    ("session", "shell"),
    ("session", "destroy"),
    ("image", "list"),
]


def _command(path: tuple[str, ...]) -> Any:
    command = ROOT
    for name in path:
        command = command.commands[name]
    return command


def _help(*path: str) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


@pytest.mark.parametrize("path", SESSION_COMMANDS, ids=[" ".join(p) for p in SESSION_COMMANDS])
def test_session_cli_help_every_command_is_there_and_documented(path: tuple[str, ...]) -> None:
    command = _command(path)
    assert (command.help or "").strip()
    assert f"Usage: vfd {' '.join(path)}" in _help(*path)


def test_session_cli_help_run_shows_its_options() -> None:
    text = _help("run")
    for option in ("--rm", "--mount", "-m", "--cpu", "--mem", "--name", "--env", "-e", "-d"):
        assert f" {option} " in text or f" {option}," in text, option
    assert "NAME[:TARGET][:ro]" in text
    assert "Exit 125" in text and "Exit 130" in text


def test_session_cli_help_exec_and_shell_say_their_exit_codes() -> None:
    assert "exit with the command's exit code" in _help("session", "exec")
    assert "exit with the shell's exit code" in _help("session", "shell")


def _parse(path: tuple[str, ...], args: list[str]) -> dict[str, Any]:
    command = _command(path)
    with command.make_context(path[-1], args) as ctx:
        return dict(ctx.params)


def test_session_cli_help_run_takes_everything_after_image_as_the_command() -> None:
    params = _parse(("run",), ["--rm", "-m", "f1", "img", "sh", "-c", "exit 3", "-d", "--help"])
    assert params["image"] == "img"
    assert params["command"] == ["sh", "-c", "exit 3", "-d", "--help"]
    assert params["remove"] is True and params["detach"] is False
    assert params["mount"] == ["f1"]


def test_session_cli_help_mem_takes_sizes() -> None:
    for text, size in (("512m", 512 << 20), ("2g", 2 << 30), ("1GiB", 1 << 30), ("1000", 1000)):
        assert _parse(("run",), ["--mem", text, "img"])["memory"] == size


def test_session_cli_help_exec_command_after_id() -> None:
    params = _parse(("session", "exec"), ["-w", "/tmp", "abcd", "--", "ls", "-la"])
    assert params["ref"] == "abcd" and params["workdir"] == "/tmp"
    assert params["command"] == ["--", "ls", "-la"]  # the first `--` is dropped when sent
    assert _parse(("session", "exec"), ["abcd", "ls", "-la"])["command"] == ["ls", "-la"]


@pytest.mark.parametrize("cpu", ["nan", "inf", "-inf", "many"])
def test_session_cli_help_run_cpu_not_a_finite_number_is_a_usage_error(
    cpu: str, vfd_bin: Path, tmp_path: Path
) -> None:
    """``--cpu nan`` is refused by the CLI as bad input (exit 2), not sent on to fail in the
    client's JSON encoder as an internal error."""
    done = run_vfd(
        vfd_bin, "run", "--cpu", cpu, "img", "true", env={"VFD_STATE_DIR": str(tmp_path)}
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and "--cpu" in done.stderr, done.stderr
    assert done.stderr.rstrip().endswith("[usage_error]"), done.stderr
    assert "internal" not in done.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("session", "info", ""),
        ("session", "logs", ""),
        ("session", "exec", "", "--", "true"),
        ("session", "destroy", ""),
    ],
    ids=lambda args: args[1],
)
def test_session_cli_help_empty_id_names_no_session(
    args: tuple[str, ...], vfd_bin: Path, tmp_path: Path
) -> None:
    """An empty ID is a usage error, before any request: it made the path ``/v1/sessions/``,
    which the daemon answers with a redirect, and the CLI failed on its empty body."""
    done = run_vfd(vfd_bin, *args, env={"VFD_STATE_DIR": str(tmp_path)})
    assert done.returncode == 2, done.stderr
    assert "an empty ID names no session" in done.stderr, done.stderr
    assert done.stderr.rstrip().endswith("[usage_error]"), done.stderr
