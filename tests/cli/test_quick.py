"""The console script's fast paths (:mod:`vfd.cli.quick`): ``vfd --help``, ``vfd --version``,
``vfd vfolder list`` and ``vfd vfolder info`` without typer.

Each command line runs through the real console script twice, once as people run it and
once with ``VFD_QUICK=off`` (typer reads it), against a fake daemon that records the
requests; both must print the same bytes, to a pipe and to a terminal, exit with the same
status and send the same requests. What the fast paths leave to typer (help of a
sub-command, mistakes) is checked to be left, and the fast paths to import no typer.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fakedaemon
import pytest
import typer

from vfd.cli import quickcmds, roothelp
from vfd.cli.main import full_app

SCRIPT = str(Path(sys.executable).parent / "vfd")

FOLDER = {
    "id": "0123456789abcdef0123456789abcdef",
    "name": "data",
    "host": "local",
    "ownership": "user",
    "usage_mode": "general",
    "permission": "wd",
    "default_permission": None,
    "cloneable": False,
    "automount": False,
    "status": "ready",
    "owner": "ann@example.org",
    "created_at": "2026-01-02T03:04:05Z",
    "status_changed_at": "2026-01-02T03:04:05Z",
    "scope": "user:ann@example.org@local",
    "views": {"rw": "/var/lib/vfd/mnt/rw/ab", "ro": "/var/lib/vfd/mnt/ro/ab"},
}
CLONED = {
    **FOLDER,
    "status": "cloning",
    "clone": {"source_id": "fedcba", "done_bytes": 10, "total_bytes": 2048},
    "status_reason": "copying",
}
HOSTS = {
    "hosts": [
        {
            "name": "local",
            "allowed": True,
            "capacity": {"total_bytes": 10**12, "used_bytes": 3 * 10**11, "free_bytes": 7 * 10**11},
            "quota": {"used_bytes": 12345678, "max_bytes": 0, "used_files": 42},
        },
        {"name": "nfs", "allowed": False, "capacity": None, "quota": None},
    ]
}
STORAGE = {"created": 3, "limit": 10, "project_folders": 1, "invited_folders": 0}
LISTED = {
    "vfolders": [
        FOLDER,
        {**FOLDER, "id": "ffff", "name": "a-much-longer-folder-name", "ownership": "project"},
        {**FOLDER, "name": "[bold]odd[/bold] :smile: naïve", "status": "trashed"},
    ]
}


def _env(**extra: str) -> dict[str, str]:
    drop = ("VFD_STATE_DIR", "VFD_CONFIG", "VFD_QUICK", "VFD_TRACEBACK", "COLUMNS", "LINES")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.pop("NO_COLOR", None)
    return {**env, **extra}


@contextlib.contextmanager
def _pty(columns: int) -> Iterator[tuple[int, int]]:
    """A terminal of ``columns`` columns: its (controller, terminal) descriptors."""
    controller, terminal = pty.openpty()
    try:
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
        yield controller, terminal
    finally:
        for fd in (controller, terminal):
            with contextlib.suppress(OSError):
                os.close(fd)


def _on_terminal(argv: list[str], env: dict[str, str], columns: int) -> tuple[int, bytes, str]:
    """``vfd ARGV`` with stdout on a terminal: (status, what the terminal got, stderr)."""
    with (
        _pty(columns) as (controller, terminal),
        subprocess.Popen(
            argv, stdout=terminal, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env
        ) as proc,
    ):
        os.close(terminal)
        shown = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal closed: the process ended
                break
            if not chunk:
                break
            shown += chunk
        assert proc.stderr is not None
        err = proc.stderr.read().decode()
        return proc.wait(60), shown, err


def _run(
    argv: list[str], env: dict[str, str], *, terminal: int | None = None
) -> tuple[int, Any, str]:
    if terminal is not None:
        return _on_terminal([SCRIPT, *argv], env, terminal)
    done = subprocess.run([SCRIPT, *argv], capture_output=True, env=env, timeout=60)
    return done.returncode, done.stdout, done.stderr.decode()


def _both(
    argv: list[str], answer: dict[str, Any], *, terminal: int | None = None, **extra: str
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """``vfd ARGV`` on the fast path and with ``VFD_QUICK=off``, each against a fake daemon
    answering ``answer``: (status, stdout, stderr, requests) of each, the state directory
    written as STATE."""
    results = []
    for quick in ("on", "off"):
        with fakedaemon.answering(answer) as (state, seen):
            (state / "vfd.toml").write_text("")
            words = [w.replace("STATE", str(state)) for w in argv]
            env = _env(
                VFD_QUICK=quick, **{k: v.replace("STATE", str(state)) for k, v in extra.items()}
            )
            status, out, err = _run(words, env, terminal=terminal)
            out = out.replace(str(state).encode(), b"STATE")
            results.append((status, out, err.replace(str(state), "STATE"), list(seen)))
    return results[0], results[1]


# what a process imported when one fast path ran vfd ARGV (it must have run it)
REPORT = """
import sys
from vfd.cli import quick
status = quick.run(sys.argv[1:])
sys.stdout.flush()
sys.stderr.write("\\nQUICK " + repr(status) + " " + " ".join(sorted(sys.modules)) + "\\n")
"""


def _quick_imports(argv: list[str], **env: str) -> tuple[int | None, set[str]]:
    done = subprocess.run(
        [sys.executable, "-c", REPORT, *argv],
        capture_output=True,
        text=True,
        env=_env(**env),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    status, *modules = done.stderr.rsplit("QUICK ", 1)[1].split()
    return (None if status == "None" else int(status)), set(modules)


# --- vfd --help -------------------------------------------------------------------------


def test_quick_root_help_is_what_typer_prints_now() -> None:
    """:data:`roothelp.TEXT` is regenerated from the typer command; a change to the root's
    options or commands must come with ``python -m vfd.cli.roothelp``."""
    assert roothelp.render() == roothelp.TEXT, "run `python -m vfd.cli.roothelp`"


@pytest.mark.parametrize(
    "env",
    [
        *({"COLUMNS": c} for c in ("80", "200", "79", "60", "20", "abc", "0")),
        *({}, {"NO_COLOR": "1"}, {"FORCE_COLOR": "1", "COLUMNS": "120"}, {"TERM": "dumb"}),
    ],
    ids=lambda env: " ".join(f"{k}={v}" for k, v in env.items()) or "none",
)
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_quick_root_help_through_a_pipe(env: dict[str, str], flag: str) -> None:
    fast, slow = _both([flag], {}, **env)
    assert fast == slow and fast[0] == 0 and b"Commands:" in fast[1]


@pytest.mark.parametrize("columns", [200, 80, 79, 64, 30])
def test_quick_root_help_on_a_terminal(columns: int) -> None:
    fast, slow = _both(["--help"], {}, terminal=columns)
    assert fast == slow and fast[0] == 0 and b"Commands:" in fast[1]
    fast, slow = _both(["--help"], {}, terminal=columns, COLUMNS="100")  # COLUMNS wins
    assert fast == slow


def test_quick_root_help_and_version_import_no_typer() -> None:
    for argv in (["--help"], ["-h"], ["--version"]):
        status, modules = _quick_imports(argv)
        assert status == 0, argv
        tops = {name.split(".")[0] for name in modules}
        assert not tops & {"typer", "click", "rich", "dataclasses", "pathlib", "json"}, argv
    status, _ = _quick_imports(["--help"], COLUMNS="60")  # laid out by typer
    assert status is None


def test_quick_version_is_typers() -> None:
    fast, slow = _both(["--version"], {})
    assert fast == slow and fast[0] == 0 and fast[1].startswith(b"vfd ")


# --- vfd vfolder list / info -------------------------------------------------------------

S = ["--state-dir", "STATE"]
READS = [
    ([*S, "vfolder", "list"], LISTED),
    ([*S, "vfolder", "list", "--trash"], LISTED),
    ([*S, "vfolder", "list", "--trash"], {"vfolders": []}),
    ([*S, "vfolder", "list"], {"vfolders": []}),
    ([*S, "vfolder", "list", "--automount", "--trash", "--automount"], LISTED),
    ([*S, "vfolder", "list", "--json"], LISTED),
    (["--state-dir=STATE", "--as", "bob@example.org", "vfolder", "list"], LISTED),
    ([*S, "--as=bob@example.org", "--config", "STATE/vfd.toml", "vfolder", "list"], LISTED),
    ([*S, "vfolder", "info", "data"], FOLDER),
    ([*S, "vfolder", "info", "--json", "da ta%"], FOLDER),
    ([*S, "vfolder", "info", "data", "--json"], FOLDER),
    ([*S, "vfolder", "info", "data"], CLONED),
    ([*S, "vfolder", "info", "data"], {**FOLDER, "views": {}, "owner": None}),
    ([*S, "vfolder", "info", "run"], FOLDER),
    ([*S, "vfolder", "list-hosts"], HOSTS),
    ([*S, "vfolder", "list-hosts", "--json"], HOSTS),
    ([*S, "vfolder", "list-hosts"], {"hosts": []}),
    ([*S, "vfolder", "storage-status"], STORAGE),
    ([*S, "vfolder", "storage-status"], {**STORAGE, "limit": 0}),
    ([*S, "vfolder", "storage-status", "--json"], STORAGE),
    # the answer's shape is not what the command expects: the `internal` error
    ([*S, "vfolder", "list"], {"vfolders": "oops"}),
    ([*S, "vfolder", "list", "--json"], {"vfolders": "oops"}),
    ([*S, "vfolder", "info", "data"], {"views": 3}),
    # the daemon's error shape
    ([*S, "vfolder", "info", "data"], {"error": "vfolder_not_found", "message": "no"}),
    # no daemon there, a config the CLI refuses
    (["--state-dir", "STATE/none", "vfolder", "list"], LISTED),
    (["--state-dir", "STATE/none", "vfolder", "list", "--json"], LISTED),
    (["--config", "STATE/missing.toml", *S, "vfolder", "info", "x", "--json"], LISTED),
]


@pytest.mark.parametrize("columns", [None, "100", "40", "300"])
@pytest.mark.parametrize(
    ("argv", "answer"), READS, ids=lambda a: " ".join(a) if isinstance(a, list) else ""
)
def test_quick_reads_as_typer_does(
    argv: list[str], answer: dict[str, Any], columns: str | None
) -> None:
    extra = {"COLUMNS": columns} if columns else {}
    fast, slow = _both(argv, answer, **extra)
    assert fast == slow
    if "none" not in " ".join(argv) and "missing" not in " ".join(argv):
        assert fast[3], "no request was sent"


@pytest.mark.parametrize(
    ("argv", "answer"),
    [(a, r) for a, r in READS if "--json" not in a and "none" not in " ".join(a)],
    ids=lambda a: " ".join(a) if isinstance(a, list) else "",
)
@pytest.mark.parametrize("columns", [120, 50])
def test_quick_reads_on_a_terminal_as_typer_does(
    argv: list[str], answer: dict[str, Any], columns: int
) -> None:
    fast, slow = _both(argv, answer, terminal=columns)
    assert fast == slow and (fast[1] or fast[2])


def test_quick_reads_the_state_dir_from_the_environment() -> None:
    fast, slow = _both(["vfolder", "list"], LISTED, VFD_STATE_DIR="STATE")
    assert fast == slow and fast[0] == 0 and fast[3]
    assert fast[3][0]["request"] == "GET /v1/vfolders?trash=false&automount=false"


def test_quick_config_errors_as_typer_does() -> None:
    fast, slow = _both([*S, "vfolder", "list"], LISTED, VFD_DEFAULT_UID="many")
    assert fast == slow and fast[0] == 1 and "[config_invalid]" in fast[2]


def test_quick_traceback_on_request() -> None:
    fast, slow = _both([*S, "vfolder", "list"], {"vfolders": "oops"}, VFD_TRACEBACK="1")
    assert fast[0] == slow[0] == 1
    for result in (fast, slow):
        assert "Traceback" in result[2] and "AttributeError" in result[2]


def test_quick_reader_gone_as_typer_does() -> None:
    """A reader that has gone (``vfd vfolder list | head -0``): exit 1, nothing said."""
    many = {"vfolders": [{**FOLDER, "name": f"f{i}"} for i in range(3000)]}
    results = []
    for quick in ("on", "off"):
        with fakedaemon.answering(many) as (state, _):
            read, write = os.pipe()
            os.close(read)
            try:
                done = subprocess.run(
                    [SCRIPT, "--state-dir", str(state), "vfolder", "list"],
                    stdout=write,
                    stderr=subprocess.PIPE,
                    env=_env(VFD_QUICK=quick),
                    timeout=60,
                )
            finally:
                os.close(write)
            results.append((done.returncode, done.stderr))
    assert results[0] == results[1] == (1, b"")


LEFT = [
    ["vfolder", "list", "--help"],
    ["vfolder", "list", "-h"],
    ["vfolder", "list", "--bogus"],
    ["vfolder", "list", "--trash=yes"],
    ["vfolder", "list", "--"],
    ["vfolder", "list", "extra"],
    ["vfolder", "list", "-"],
    ["vfolder", "info"],
    ["vfolder", "info", "a", "b"],
    ["vfolder", "info", ""],
    ["vfolder", "info", "--", "-x"],
    ["vfolder", "info", "-x"],
    ["vfolder", "info", "--trash", "x"],
    ["vfolder", "list-hosts", "x"],
    ["vfolder", "storage-status", "--trash"],
    ["vfolder", "upload", "data"],
    ["vfolder", "upload", "data", "x", "--dest"],
    ["vfolder", "upload", "data", "x", "--dest=y"],
    ["vfolder", "upload", "data", "x", "-d", "-y"],
    ["vfolder", "upload", "data", "x", "-d", ""],
    ["vfolder", "upload", "data", "x", "--dest", "a", "-d", "b"],
    ["vfolder", "upload", "data", "x", "--overwrite=yes"],
    ["vfolder", "upload", "data", "--", "-x"],
    ["vfolder", "upload", "data", "x", "--help"],
    ["vfolder", "download", "data"],
    ["vfolder", "download", "data", "x", "--dest"],
    ["vfolder", "download", "data", "x", "--overwrite"],
    ["vfolder", "lst"],
    ["vfolder"],
    ["vfolder", "--help"],
    ["--json", "vfolder", "list"],
    ["--bogus", "vfolder", "list"],
    ["--state-dir"],
    ["--help", "vfolder", "list"],
    ["--version", "vfolder", "list"],
    [],
]


@pytest.mark.parametrize("argv", LEFT, ids=lambda a: " ".join(a) or "nothing")
def test_quick_leaves_the_rest_to_typer(argv: list[str]) -> None:
    with pytest.raises(quickcmds.NotSure):
        quickcmds.parse([*S, *argv])
    fast, slow = _both([*S, *argv], LISTED, COLUMNS="100")
    assert fast == slow


def test_quick_commands_import_no_typer() -> None:
    with fakedaemon.answering({"vfolders": [FOLDER]}) as (state, _):
        for argv in (["vfolder", "list"], ["vfolder", "info", "x", "--json"]):
            status, modules = _quick_imports(["--state-dir", str(state), *argv])
            assert status == 0, argv
            tops = {name.split(".")[0] for name in modules}
            assert not tops & {"typer", "click", "rich", "http", "ssl", "email"}, argv
            assert "vfd.cli.vfolder" not in modules and "vfd.cli.clone" not in modules


def test_quick_table_is_the_typer_commands() -> None:
    """Every fast-path command takes exactly the flags and arguments of its typer command,
    in the forms the fast path reads (flags without values, single arguments, options and
    arguments in any order), and its group adds no option of its own."""
    root = typer.main.get_command(full_app())
    for path, quick in quickcmds.QUICK.items():
        group = root.commands[path[0]]  # type: ignore[attr-defined]
        assert [p.name for p in group.params if p.name != "help"] == []
        assert group.callback is None or not group.params[:-1]
        command = group.commands[path[1]]
        options = [p for p in command.params if p.param_type_name == "option"]
        flags, valued = {}, {}
        for option in options:
            if option.name == "help":
                continue
            assert not option.multiple and not option.secondary_opts
            assert not option.envvar, option.name
            if option.is_flag:
                (name,) = option.opts
                flags[name] = option.name
                continue
            assert option.nargs == 1 and not option.required, option.name
            for name in option.opts:
                valued[name] = option.name
            assert quick.defaults[option.name] == option.default, option.name
            turn = quick.convert.get(option.name)
            assert isinstance(option.default, str if turn is None else turn), option.name
        expected = {n: ("json" if d == "json" else d) for n, d in quick.flags.items()}
        assert {n: ("json" if d == "json_output" else d) for n, d in flags.items()} == expected
        assert valued == quick.options
        arguments = [p for p in command.params if p.param_type_name == "argument"]
        assert tuple(a.name for a in arguments) == quick.arguments
        for a in arguments:
            assert a.required, a.name
            assert a.nargs == (-1 if a.name == quick.many else 1), a.name
        assert command.context_settings.get("allow_interspersed_args", True)


@pytest.mark.parametrize("argv", [["--help"], ["--version"], [*S, "vfolder", "list"]], ids=" ".join)
def test_quick_stdout_closed_as_typer_does(argv: list[str]) -> None:
    """Started with stdout closed (``vfd --help >&-``): the same status, no traceback."""
    results = []
    for quick in ("on", "off"):
        with fakedaemon.answering(LISTED) as (state, _):
            done = subprocess.run(
                ["sh", "-c", 'exec "$@" >&-', "sh", SCRIPT]
                + [w.replace("STATE", str(state)) for w in argv],
                stderr=subprocess.PIPE,
                env=_env(VFD_QUICK=quick),
                timeout=60,
            )
            results.append((done.returncode, done.stderr))
    assert results[0] == results[1]
    assert b"Traceback" not in results[0][1]
