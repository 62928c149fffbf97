"""The ``vfd`` command starts fast: it imports what the command it runs needs, nothing more.

Checked by what a real ``vfd`` process has imported when it ends (a subprocess printing
``sys.modules``), not by timing; the timing is ``benchmarks/cli_bench.py``. The lazy root
group's table of commands (:mod:`vfd.cli.commands`) is checked against the real modules, so
``vfd --help`` cannot drift from them.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import os
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import fakedaemon
import pytest
import typer
from typer.testing import CliRunner

from vfd.cli import commands, output
from vfd.cli.main import full_app, lazy_app

if TYPE_CHECKING:
    from rich.console import Console

# what no start-up needs: HTTP stacks (http.client imports ssl, which loads libssl, and the
# email parser), the validators, the server side, the metadata reader
NEVER = (
    *("httpx", "httpcore", "trio", "anyio", "pydantic", "sqlmodel", "sqlalchemy", "docker"),
    *("http", "ssl", "_ssl", "email", "urllib3", "zipfile", "csv"),
)
NEVER_MODULES = {"importlib.metadata"}
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
    with fakedaemon.answering(answer) as (state, _):
        yield state


def test_startup_help_imports_no_command_module() -> None:
    imported = _imported("--help")
    assert not _tops(imported) & {*NEVER, "rich", "markdown_it"}, sorted(imported)
    assert not imported & COMMAND_MODULES
    assert "vfd.cli.vfolder" not in imported and not imported & NEVER_MODULES


def test_startup_vfolder_list_imports_its_group_only() -> None:
    with _daemon({"vfolders": []}) as state:
        imported = _imported("--state-dir", str(state), "vfolder", "list")
        as_json = _imported("--state-dir", str(state), "vfolder", "list", "--json")
    assert "vfd.cli.vfolder" in imported
    assert not _tops(imported) & set(NEVER), sorted(imported)
    assert not imported & COMMAND_MODULES and not imported & NEVER_MODULES
    assert "vfd.cli.transfer" not in imported  # tarfile and friends: for transfers only
    assert "rich" not in _tops(imported)  # a table to a pipe is written plainly
    assert "rich" not in _tops(as_json)


def test_startup_status_imports_no_other_group() -> None:
    with _daemon({"daemon": {}, "mountd": {}}) as state:
        imported = _imported("--state-dir", str(state), "status", "--json")
        shown = _imported("--state-dir", str(state), "status")  # with the client's version
    for modules in (imported, shown):
        assert "vfd.cli.system" in modules
        assert not _tops(modules) & set(NEVER), sorted(modules)
        assert not modules & COMMAND_MODULES and not modules & NEVER_MODULES
    assert "rich" not in _tops(shown)  # its key/value list is written plainly to a pipe


def test_startup_run_help_imports_no_client() -> None:
    imported = _imported("run", "--help")
    assert "vfd.cli.run" in imported
    assert not _tops(imported) & set(NEVER), sorted(imported)
    assert not imported & NEVER_MODULES


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


def _rich_output(width: int, draw: Callable[[Console], None]) -> str:
    from rich.console import Console

    out = io.StringIO()
    draw(Console(file=out, width=width, highlight=False, soft_wrap=False, force_terminal=False))
    return out.getvalue()


def _plain_output(
    monkeypatch: pytest.MonkeyPatch, width: int, draw: Callable[[Console], None]
) -> str:
    out = io.StringIO()
    monkeypatch.setenv("COLUMNS", str(width))
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)
    monkeypatch.setattr(sys, "stdout", out)
    draw(output.make_console())
    monkeypatch.undo()
    return out.getvalue()


def test_startup_plain_tables_are_what_rich_prints(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables written to a pipe without rich are rich's own output, byte for byte: fitting or
    not, cells of every length, odd text (rich then prints them)."""
    rng = random.Random(14)
    words = ["-", "a", "ready", "root@local", "3.5 GiB", "x" * 30, "é", "a b", "[b]x[/b]", "tab\t"]
    words += [  # long lines that key/value lists wrap
        "answering, version 0.1.0, mount /tmp/vfd-cli-bench-x/state/mnt, 0 folders, pid 21159",
        " lead  and  trail  ",
        "a" * 45 + " " + "b" * 90 + "   c",
        "on (libfuse 3.14, pyfuse3 3.5.0, /usr/lib/x86_64-linux-gnu/libfuse3.so.3.14.0)",
    ]
    for _ in range(600):
        width = rng.choice([9, 12, 20, 33, 40, 80, 100, 200])
        columns = [rng.choice(["id", "name", "usage mode", "status", "owner"]) for _ in range(5)]
        columns = columns[: rng.randint(1, 5)]
        rows = [[rng.choice(words) for _ in columns] for _ in range(rng.randint(0, 4))]
        empty = rng.choice(["no folders", "nothing to show"])
        pairs = [(rng.choice(["name", "quota", "usage mode"]), rng.choice(words)) for _ in rows]

        def draw_table(console: Console) -> None:
            output.table(console, columns, rows, empty=empty)  # noqa: B023

        def draw_pairs(console: Console) -> None:
            output.key_values(console, pairs)  # noqa: B023

        for draw in (draw_table, draw_pairs):
            expected = _rich_output(width, draw)
            assert _plain_output(monkeypatch, width, draw) == expected, (width, columns, rows)


def test_startup_plain_table_needs_no_rich() -> None:
    code = (
        "import sys; from vfd.cli import output; "
        "output.table(output.make_console(), ['id', 'name'], [['1', 'a']]); "
        "output.key_values(output.make_console(), [('name', 'a')]); "
        "assert 'rich' not in sys.modules, sorted(sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "id  name\n1   a   \nname  a\n"


@pytest.mark.parametrize(("name", "only"), [("vfolder", "list"), ("admin", "quota")])
def test_startup_group_builds_only_the_command_that_runs(name: str, only: str) -> None:
    real = typer.main.get_command(full_app()).commands[name]  # type: ignore[attr-defined]
    narrowed = commands.load(name, only=only)
    assert list(narrowed.commands) == [only]  # type: ignore[attr-defined]
    one, whole = narrowed.commands[only], real.commands[only]  # type: ignore[attr-defined]
    assert type(one) is type(whole) and [p.name for p in one.params] == [
        p.name for p in whole.params
    ]
    assert sorted(commands.load(name).commands) == sorted(real.commands)  # type: ignore[attr-defined]


@pytest.mark.parametrize("only", ["lst", "--help", "-h"])
def test_startup_group_is_whole_for_help_and_mistakes(only: str) -> None:
    real = typer.main.get_command(full_app()).commands["vfolder"]  # type: ignore[attr-defined]
    loaded = commands.load("vfolder", only=only)
    assert sorted(loaded.commands) == sorted(real.commands)  # type: ignore[attr-defined]


def test_startup_run_detached_imports_no_http_stack() -> None:
    """``vfd run -d``: everything before its POST counts in the session benchmark."""
    with _daemon({"id": "0123456789ab", "short_id": "01234567", "name": "s1"}) as state:
        imported = _imported("--state-dir", str(state), "run", "-d", "busybox", "true")
    assert {"vfd.cli.run", "vfd.cli.client"} <= imported
    assert not _tops(imported) & {*NEVER, "rich"}, sorted(imported)
    assert not imported & NEVER_MODULES


SCRIPT_REPORT = """
import json, sys
sys.argv = ["vfd", *json.loads(sys.argv[1])]
from vfd.cli import entry
leave = entry._leave

def report():
    sys.stderr.write("\\nMODULES " + json.dumps(sorted(sys.modules)) + "\\n")
    leave()

entry._leave = report
entry.run()
"""


def _script_imported(*argv: str) -> set[str]:
    """The modules a ``vfd ARGV`` process run as the console script runs it imported (it must
    succeed)."""
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT_REPORT, json.dumps(argv)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stderr.rsplit("MODULES ", 1)[1]))


def test_startup_script_run_detached_imports_no_cli_framework() -> None:
    """The console script's ``vfd run -d`` (its fast path) imports neither typer nor click, rich
    or pydantic, nor a command module."""
    with _daemon({"id": "0123456789ab", "short_id": "01234567", "name": "s1"}) as state:
        imported = _script_imported("--state-dir", str(state), "run", "-d", "-m", "f1", "i", "true")
    assert "vfd.cli.quickrun" in imported and "vfd.cli.client" in imported
    assert not _tops(imported) & {*NEVER, "typer", "click", "rich"}, sorted(imported)
    assert not imported & {*COMMAND_MODULES, "vfd.cli.run", "vfd.cli.main"}
    assert not imported & NEVER_MODULES


def test_startup_script_run_help_is_typers() -> None:
    imported = _script_imported("run", "--help")
    assert {"typer", "vfd.cli.run"} <= imported


def test_startup_script_vfolder_list_imports_no_dataclasses_nor_config() -> None:
    """The console script's fast path to the daemon imports neither ``dataclasses`` (with
    ``inspect``, about 7 ms) nor :mod:`vfd.config` (its dataclasses): with no config file and
    no ``VFD_*`` variable but the state directory, the socket is the built-in one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VFD_")}
    with _daemon({"vfolders": []}) as state:
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT_REPORT, json.dumps(["vfolder", "list"])],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**env, "VFD_STATE_DIR": str(state)},
        )
        assert done.returncode == 0, done.stderr
        imported = set(json.loads(done.stderr.rsplit("MODULES ", 1)[1]))
        assert {"vfd.cli.quickcmds", "vfd.cli.client"} <= imported
        assert not imported & {"dataclasses", "inspect", "vfd.config"}, sorted(imported)
        # a config file in the state directory: read, as always
        (state / "vfd.toml").write_text('log_level = "debug"\n')
        again = subprocess.run(
            [sys.executable, "-c", SCRIPT_REPORT, json.dumps(["vfolder", "list"])],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**env, "VFD_STATE_DIR": str(state)},
        )
    assert again.returncode == 0, again.stderr
    assert "vfd.config" in set(json.loads(again.stderr.rsplit("MODULES ", 1)[1]))
