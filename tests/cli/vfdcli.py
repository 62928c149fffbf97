"""Helpers of the CLI tests: run ``vfd`` in-process or as a process, and check its output.

:class:`Cli` runs the typer app with typer's ``CliRunner`` (fast: no interpreter start);
:func:`run_vfd` runs the installed console script, for the tests that must see the real exit
status and streams of a separate process.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from vfd.cli.main import app

WIDE = {"COLUMNS": "250"}  # rich tables must not fold ids and names in assertions


def unique(prefix: str) -> str:
    """A folder/project/policy name no other test of the shared daemon uses."""
    return f"{prefix}-{secrets.token_hex(3)}"


def no_crash(result: Result) -> None:
    """A CliRunner result ended by exit(), not by an exception escaping the command."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"command crashed: {result.exception!r}") from result.exception
    assert "Traceback" not in result.output


class Cli:
    """``vfd`` in-process, with helpers that check exit status and output shape."""

    def __init__(self, env: dict[str, str]) -> None:
        # our own VFD_* settings (not the test knobs) must not leak into the command
        leaked = {k: None for k in os.environ if k.startswith("VFD_") and "TEST" not in k}
        self.env: dict[str, str | None] = {**leaked, **env, **WIDE}
        self.runner = CliRunner()

    def run(self, *args: str, as_: str | None = None) -> Result:
        argv = (["--as", as_] if as_ else []) + list(args)
        result = self.runner.invoke(app, argv, env=self.env)
        no_crash(result)
        return result

    def ok(self, *args: str, as_: str | None = None) -> str:
        """Run; assert exit 0; the stdout."""
        result = self.run(*args, as_=as_)
        assert result.exit_code == 0, (args, result.stdout, result.stderr)
        return result.stdout

    def json(self, *args: str, as_: str | None = None) -> Any:
        """Run with ``--json``; assert exit 0 and a JSON stdout; the parsed value."""
        return json.loads(self.ok(*args, "--json", as_=as_))

    def fails(self, *args: str, code: str, as_: str | None = None) -> dict[str, Any]:
        """Assert the command fails with ``code`` both ways: ``error: ... [code]`` on stderr
        with exit 1, and the JSON error on stdout with ``--json``; the error object."""
        human = self.run(*args, as_=as_)
        assert human.exit_code == 1, (args, human.stdout, human.stderr)
        assert human.stderr.startswith("error: "), human.stderr
        assert human.stderr.rstrip().endswith(f"[{code}]"), human.stderr
        assert human.stdout == ""
        machine = self.run(*args, "--json", as_=as_)
        assert machine.exit_code == 1, (args, machine.stdout, machine.stderr)
        error: dict[str, Any] = json.loads(machine.stdout)["error"]
        assert error["code"] == code, error
        return error

    def usage_error(self, *args: str, as_: str | None = None) -> str:
        """Assert a usage error: exit 2, ``error: <message> [usage_error]`` on stderr and
        nothing on stdout; the message printed."""
        result = self.run(*args, as_=as_)
        assert result.exit_code == 2, (args, result.stdout, result.stderr)
        assert result.stdout == "", result.stdout
        assert result.stderr.startswith("error: "), result.stderr
        assert result.stderr.rstrip().endswith("[usage_error]"), result.stderr
        return result.stderr


def run_vfd(
    vfd_bin: Path, *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the real ``vfd`` process with ``env`` over a clean VFD_*-free environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("VFD_")}
    return subprocess.run(
        [str(vfd_bin), *args],
        env={**base, **WIDE, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
