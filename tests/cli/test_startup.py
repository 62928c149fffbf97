"""The ``vfd`` command starts fast: it imports what the command it runs needs, nothing more.

Checked by what a real ``vfd`` process has imported when it ends (a subprocess printing
``sys.modules``), not by timing; the timing is ``benchmarks/cli_bench.py``. The lazy root
group's table of commands (:mod:`vfd.cli.commands`) is checked against the real modules, so
``vfd --help`` cannot drift from them.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from vfd.cli import commands
from vfd.cli.main import full_app, lazy_app

# what no start-up needs: HTTP stacks with async back-ends, the validators, the server side
NEVER = ("httpx", "httpcore", "trio", "anyio", "pydantic", "sqlmodel", "sqlalchemy", "docker")
COMMAND_MODULES = {f"vfd.cli.{name}" for name in ("admin", "session", "dotfile", "image", "up")}

REPORT = """
import json, sys
sys.argv = ["vfd", *json.loads(sys.argv[1])]
from vfd.cli.main import main
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
sys.stderr.write("\\nMODULES " + json.dumps(sorted(sys.modules)) + "\\n")
sys.exit(code)
"""


def _imported(*argv: str) -> set[str]:
    """The modules a ``vfd ARGV`` process imported (it must succeed)."""
    done = subprocess.run(
        [sys.executable, "-c", REPORT, json.dumps(argv)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    line = done.stderr.rsplit("MODULES ", 1)[1]
    return set(json.loads(line))


def _tops(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


@contextlib.contextmanager
def _daemon(answer: dict[str, object]) -> Iterator[Path]:
    """A state directory whose API socket answers every request with ``answer``."""
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        state = Path(tmp)
        (state / "run").mkdir()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(state / "run" / "vfd.sock"))
        listener.listen()
        body = json.dumps(answer).encode()

        def serve() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                with conn, contextlib.suppress(OSError):
                    data = b""
                    while b"\r\n\r\n" not in data and (chunk := conn.recv(65536)):
                        data += chunk
                    head = (
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                    )
                    conn.sendall(head.encode() + body)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            yield state
        finally:
            listener.shutdown(socket.SHUT_RDWR)
            listener.close()
            thread.join(10)


def test_startup_help_imports_no_command_module() -> None:
    imported = _imported("--help")
    assert not _tops(imported) & {*NEVER, "rich", "markdown_it"}, sorted(imported)
    assert not imported & COMMAND_MODULES
    assert "vfd.cli.vfolder" not in imported and "http.client" not in imported


def test_startup_vfolder_list_imports_its_group_only() -> None:
    with _daemon({"vfolders": []}) as state:
        imported = _imported("--state-dir", str(state), "vfolder", "list")
        as_json = _imported("--state-dir", str(state), "vfolder", "list", "--json")
    assert "vfd.cli.vfolder" in imported
    assert not _tops(imported) & set(NEVER), sorted(imported)
    assert not imported & COMMAND_MODULES
    assert "vfd.cli.transfer" not in imported  # tarfile and friends: for transfers only
    assert "rich" in _tops(imported)  # the table is printed with rich ...
    assert "rich" not in _tops(as_json)  # ... which JSON output never imports


def test_startup_status_imports_no_other_group() -> None:
    with _daemon({"daemon": {}, "mountd": {}}) as state:
        imported = _imported("--state-dir", str(state), "status", "--json")
    assert "vfd.cli.system" in imported
    assert not _tops(imported) & set(NEVER), sorted(imported)
    assert not imported & COMMAND_MODULES


def test_startup_command_table_matches_the_modules() -> None:
    whole = typer.main.get_command(full_app())
    real = whole.commands  # type: ignore[attr-defined]
    assert list(real) == list(commands.COMMANDS)
    for name, command in real.items():
        first = inspect.cleandoc(command.short_help or command.help or "").split("\n\n")[0]
        assert commands.COMMANDS[name].help == first, name


def test_startup_lazy_help_is_the_full_help() -> None:
    def shown(app: typer.Typer, *args: str) -> str:
        result = CliRunner().invoke(app, list(args), env={"COLUMNS": "100"}, prog_name="vfd")
        return result.output

    assert shown(lazy_app(), "--help") == shown(full_app(), "--help")
    assert shown(lazy_app()) == shown(full_app())  # no arguments: the help too


@pytest.mark.parametrize("name", list(commands.COMMANDS))
def test_startup_lazy_command_is_the_real_one(name: str) -> None:
    real = typer.main.get_command(full_app()).commands[name]  # type: ignore[attr-defined]
    loaded = commands.load(name)
    assert type(loaded) is type(real)
    assert [p.name for p in loaded.params] == [p.name for p in real.params]
    assert sorted(getattr(loaded, "commands", {})) == sorted(getattr(real, "commands", {}))


def test_startup_unknown_command_is_suggested() -> None:
    result = CliRunner().invoke(lazy_app(), ["vfoldr"], prog_name="vfd")
    assert result.exit_code == 2
    assert "Did you mean 'vfolder'?" in result.output
