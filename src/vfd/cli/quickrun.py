"""The console script's fast path for ``vfd run``: the command line read without typer.

Starting typer, click and the command modules costs a short ``vfd run`` more than its request
takes. A command line this module is sure about (global options, ``run``, run's options in the
forms typer takes them, IMAGE, the command) is read here and run by :mod:`vfd.cli.runflow`,
exactly as the typer command runs it; anything else (help, an option or form not in the
tables below, a value the option's parser refuses, no IMAGE) is left to typer, which prints
its usage, help or error as ever. The tables are checked against the typer command by
``tests/cli/test_quickrun.py``, so the two read the same command lines.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vfd.cli import runflow
from vfd.cli.durations import duration_option
from vfd.cli.output import print_error
from vfd.cli.sizes import size_option
from vfd.cli.state import CliState
from vfd.errors import VfdError


@dataclass(frozen=True)
class Opt:
    """One option as typer declares it: its names, where its value goes, and its kind."""

    names: tuple[str, ...]
    dest: str
    takes_value: bool = True
    multiple: bool = False
    parser: Callable[[str], Any] | None = None
    envvar: str | None = None


GLOBAL = (
    Opt(("--state-dir",), "state_dir", parser=Path, envvar="VFD_STATE_DIR"),
    Opt(("--config",), "config_file", parser=Path, envvar="VFD_CONFIG"),
    Opt(("--as",), "act_as"),
)
"""The root's options read here (``--version`` and ``--help`` are typer's)."""

RUN = (
    Opt(("--mount", "-m"), "mount", multiple=True),
    Opt(("--cpu",), "cpu", parser=runflow.cpu_option),
    Opt(("--mem", "--memory"), "memory", parser=size_option),
    Opt(("--group",), "group"),
    Opt(("--preset",), "preset"),
    Opt(("--lifetime",), "lifetime", parser=duration_option),
    Opt(("--name",), "name"),
    Opt(("--env", "-e"), "env", multiple=True),
    Opt(("--rm",), "remove", takes_value=False),
    Opt(("--detach", "-d"), "detach", takes_value=False),
    Opt(("--json",), "json_output", takes_value=False),
)
"""``vfd run``'s options (``--help`` is typer's)."""


class _NotSure(Exception):
    """The command line is not one this module reads: typer reads it."""


def _options(argv: list[str], at: int, table: tuple[Opt, ...]) -> tuple[dict[str, Any], int]:
    """Read options from ``argv[at:]`` up to the first word that is not one; the values by
    ``dest`` and where that word is."""
    by_name = {name: opt for opt in table for name in opt.names}
    values: dict[str, Any] = {}
    while at < len(argv) and argv[at].startswith("-") and argv[at] != "-":
        word = argv[at]
        name, eq, attached = word.partition("=") if word.startswith("--") else (word, "", "")
        opt = by_name.get(name)
        if opt is None:  # --help, -h, --, an unknown option, -dm, -mNAME
            raise _NotSure
        at += 1
        if not opt.takes_value:
            if eq:
                raise _NotSure
            values[opt.dest] = True
            continue
        if eq:
            text = attached
        elif at < len(argv):
            text, at = argv[at], at + 1
        else:
            raise _NotSure
        if not text:  # an empty value: what typer makes of it is typer's business
            raise _NotSure
        try:
            value = text if opt.parser is None else opt.parser(text)
        except Exception:  # the parser's usage error: typer prints it
            raise _NotSure from None
        if opt.multiple:
            values.setdefault(opt.dest, []).append(value)
        else:
            values[opt.dest] = value
    return values, at


def _parse(argv: list[str]) -> tuple[CliState, dict[str, Any], bool]:
    """The state, request body and ``--detach`` of ``argv`` (``_NotSure`` when unsure)."""
    given, at = _options(argv, 0, GLOBAL)
    for opt in GLOBAL:
        if opt.dest not in given and opt.envvar and (text := os.environ.get(opt.envvar)):
            given[opt.dest] = Path(text)
    if argv[at : at + 1] != ["run"]:
        raise _NotSure
    options, at = _options(argv, at + 1, RUN)
    if at >= len(argv):
        raise _NotSure  # no IMAGE: typer says so
    detach = bool(options.pop("detach", False))
    cli = CliState(**given, json=bool(options.pop("json_output", False)))
    try:
        body = runflow.request_body(argv[at], argv[at + 1 :], **options)
    except Exception:  # an -e entry refused: typer says why
        raise _NotSure from None
    return cli, body, detach


def run(argv: list[str]) -> int | None:
    """Run ``vfd ARGV`` when it is a ``vfd run`` this module reads; its exit status, or None
    for typer to read it."""
    try:
        cli, body, detach = _parse(argv)
    except _NotSure:
        return None
    try:
        return runflow.start(cli, body, detach=detach)
    except VfdError as exc:  # as the root command ends every command's VfdError
        print_error(exc, as_json=cli.json)
        return 1
    except KeyboardInterrupt:  # as click ends a command interrupted
        sys.stderr.write("\nAborted!\n")
        return 1
    except Exception as exc:
        broken_pipe = isinstance(exc, OSError) and exc.errno == errno.EPIPE
        if broken_pipe or os.environ.get("VFD_TRACEBACK") == "1":
            raise
        from vfd.cli.main import _unexpected

        print_error(_unexpected(exc), as_json=cli.json)
        return 1
    finally:
        cli.close()
