"""``vfd run``'s fast path (:mod:`vfd.cli.quickrun`) reads a command line as typer does.

Its option tables are checked against the real typer command; a corpus of command lines sends
the same requests (and prints the same) through the console script's fast path as through
typer, against a fake daemon that records them; and what the fast path leaves to typer (help,
mistakes) comes out exactly as typer prints it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import fakedaemon
import pytest
import typer

from vfd.cli import quickrun
from vfd.cli.main import full_app

TYPER_PATH = "import sys; sys.argv[0] = 'vfd'; from vfd.cli.main import main; main()"
CREATED = {"id": "0123456789abcdef", "short_id": "01234567", "name": "quick-fox"}


def _shape(options: tuple[quickrun.Opt, ...]) -> dict[frozenset[str], tuple[bool, bool]]:
    return {frozenset(o.names): (o.takes_value, o.multiple) for o in options}


def _typer_shape(command: Any, leave: set[str]) -> dict[frozenset[str], tuple[bool, bool]]:
    shape = {}
    for param in command.params:
        names = frozenset([*param.opts, *param.secondary_opts])
        if param.param_type_name != "option" or names & leave:
            continue
        shape[names] = (not param.is_flag, bool(param.multiple))
    return shape


def test_quickrun_tables_are_the_typer_commands_options() -> None:
    root = typer.main.get_command(full_app())
    run = root.commands["run"]  # type: ignore[attr-defined]
    assert _shape(quickrun.RUN) == _typer_shape(run, {"--help"})
    assert _shape(quickrun.GLOBAL) == _typer_shape(root, {"--help", "--version"})
    dests = {p.name for p in run.params if p.param_type_name == "option"} - {"help"}
    assert {o.dest for o in quickrun.RUN} == dests
    envvars = {p.name: p.envvar for p in root.params if p.param_type_name == "option"}
    for opt in quickrun.GLOBAL:
        assert envvars[opt.dest] == opt.envvar
    assert run.context_settings.get("allow_interspersed_args") is False  # IMAGE ends options
    arguments = [p.name for p in run.params if p.param_type_name == "argument"]
    assert arguments == ["image", "command"]


def _recording_daemon() -> contextlib.AbstractContextManager[tuple[Path, list[dict[str, Any]]]]:
    """A state directory whose API socket answers every request with :data:`CREATED`, and the
    requests it got (method, path, act-as header, JSON body)."""
    return fakedaemon.answering(CREATED)


def _script() -> str:
    return str(Path(sys.executable).parent / "vfd")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VFD_STATE_DIR", "VFD_CONFIG")}
    return {**env, "COLUMNS": "100", "QUICK_VALUE": "from here", **extra}


def _both(argv: list[str], env: dict[str, str]) -> tuple[Any, Any]:
    """``vfd ARGV`` through the console script and through typer: (exit status, stdout,
    stderr, requests) of each."""
    results = []
    for cmd in ([_script()], [sys.executable, "-c", TYPER_PATH]):
        with _recording_daemon() as (state, seen):
            words = [w.replace("STATE", str(state)) for w in argv]
            (state / "vfd.toml").write_text("")
            run_env = {k: v.replace("STATE", str(state)) for k, v in env.items()}
            done = subprocess.run(
                [*cmd, *words], capture_output=True, text=True, env=run_env, timeout=60
            )
            out = [o.replace(str(state), "STATE") for o in (done.stdout, done.stderr)]
            results.append((done.returncode, *out, list(seen)))
    return results[0], results[1]


S = ["--state-dir", "STATE"]
IMAGE = ["busybox:1"]
CORPUS = [
    [*S, "run", "-d", *IMAGE, "true"],
    [*S, "run", "--detach", *IMAGE],
    [*S, "run", "-d", "-m", "f1", "-m", "f2", *IMAGE, "true"],
    [*S, "run", "-d", "--mount", "f1:/data:ro", "--mount=f2", *IMAGE, "true"],
    [*S, "run", "-d", "--cpu", "0.5", *IMAGE, "true"],
    [*S, "run", "-d", "--cpu=2", "--cpu", "4", *IMAGE, "true"],
    [*S, "run", "-d", "--mem", "512m", *IMAGE, "true"],
    [*S, "run", "-d", "--memory=2GiB", *IMAGE, "true"],
    [*S, "run", "-d", "--group", "gpu", "--preset=small", *IMAGE, "true"],
    [*S, "run", "-d", "--fgpu", "0.5", *IMAGE, "true"],
    [*S, "run", "-d", "--gpu=2", "--slot", "x.y=1", "--slot=a.b=0.5", *IMAGE, "true"],
    [*S, "run", "-d", "--lifetime", "90s", *IMAGE, "sleep", "1"],
    [*S, "run", "-d", "--lifetime=1.5h", "--name", "job-1", *IMAGE],
    [*S, "run", "-d", "--name=-odd", *IMAGE],
    [*S, "run", "-d", "--name", "-d", *IMAGE],
    [*S, "run", "-d", "-e", "A=1", "--env", "B=x=y", "--env=C=", *IMAGE, "env"],
    [*S, "run", "-d", "-e", "QUICK_VALUE", *IMAGE, "env"],
    [*S, "run", "-d", "--rm", "--rm", *IMAGE, "true"],
    [*S, "run", "-d", "--json", *IMAGE, "true"],
    [*S, "run", "--json", "--detach", "--rm", *IMAGE, "sh", "-c", "echo hi"],
    [*S, "run", "-d", *IMAGE, "--", "ls", "-l"],
    [*S, "run", "-d", *IMAGE, "ls", "--", "-d", "--help", "-h", "--rm"],
    [*S, "run", "-d", *IMAGE, "-m", "x", "--json"],
    [*S, "run", "-d", "-", "true"],
    ["--state-dir=STATE", "run", "-d", *IMAGE, "true"],
    [*S, "--as", "ann@example.org", "run", "-d", *IMAGE, "true"],
    [*S, "--as=bob@example.org", "--config", "STATE/vfd.toml", "run", "-d", *IMAGE],
    ["--config=STATE/vfd.toml", "--state-dir", "STATE", "run", "-d", *IMAGE, "true"],
    ["--state-dir", "/nowhere", "--state-dir", "STATE", "run", "-d", *IMAGE],
    [*S, "run", "--rm", "-m", "f1", *IMAGE, "true"],  # followed: the fake's answer is no output
    [*S, "run", "--json", *IMAGE, "true"],
    ["--state-dir", "STATE/no-such-dir", "run", "-d", *IMAGE],  # no daemon: exit 125
    ["--state-dir", "STATE/no-such-dir", "run", "-d", "--json", *IMAGE],
]


@pytest.mark.parametrize("argv", CORPUS, ids=" ".join)
def test_quickrun_sends_what_typer_sends(argv: list[str]) -> None:
    fast, slow = _both(argv, _env())
    assert fast == slow
    if "no-such-dir" not in " ".join(argv):
        assert fast[3], "no request was sent"


def test_quickrun_reads_the_state_dir_from_the_environment() -> None:
    fast, slow = _both(["run", "-d", "-m", "f1", *IMAGE, "true"], _env(VFD_STATE_DIR="STATE"))
    assert fast == slow and fast[0] == 0 and fast[3]


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--help"],
        ["run", "-h", *IMAGE],
        ["run", "-d", "--help", *IMAGE],
        ["--help"],
        ["--version", "run", *IMAGE],
        ["run", "--bogus", *IMAGE],
        ["run", "--cpu", "many", *IMAGE],
        ["run", "--cpu=nan", *IMAGE],
        ["run", "--mem", "lots", *IMAGE],
        ["run", "--lifetime", "forever", *IMAGE],
        ["run", "--gpu", "many", *IMAGE],
        ["run", "--fgpu=inf", *IMAGE],
        ["run", "--slot", "cuda.shares", *IMAGE],
        ["run", "--fgpu", "0.5", "--slot", "cuda.shares=0.5", *IMAGE],
        ["run", "-dm", "f1", *IMAGE],
        ["run", "-mf1", *IMAGE],
        ["run", "--rm=yes", *IMAGE],
        ["run", "--", *IMAGE],
        ["run"],
        ["run", "-d"],
        ["run", "--name"],
        ["run", "-e", "=1", *IMAGE],
        ["run", "-e", "QUICK_UNSET_VALUE", *IMAGE],
        ["--json", "run", *IMAGE],
        ["--bogus", "run", *IMAGE],
        ["rn", *IMAGE],
    ],
    ids=" ".join,
)
def test_quickrun_leaves_the_rest_to_typer(argv: list[str]) -> None:
    assert quickrun.run([*S, *argv]) is None
    fast, slow = _both([*S, *argv], _env())
    assert fast == slow


def test_quickrun_leaves_an_empty_value_to_typer() -> None:
    assert quickrun.run(["--state-dir=", "run", *IMAGE]) is None
    assert quickrun.run([*S, "run", "--name=", *IMAGE]) is None
