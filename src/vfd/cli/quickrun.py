"""The console script's fast path for ``vfd run``: the command line read without typer.

Starting typer, click and the command modules costs a short ``vfd run`` more than its request
takes. A command line this module is sure about (global options, ``run``, run's options in the
forms typer takes them, IMAGE, the command) is read here and run by :mod:`vfd.cli.runflow`,
exactly as the typer command runs it; anything else (help, an option or form not in the
tables, here and in :mod:`vfd.cli.quickargs`, a value the option's parser refuses, no IMAGE)
is left to typer, which prints its usage, help or error as ever. The tables are checked
against the typer command by ``tests/cli/test_quickrun.py``, so the two read the same
command lines.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Any

from vfd.cli import quickargs, runflow
from vfd.cli.durations import duration_option
from vfd.cli.output import print_error
from vfd.cli.quickargs import GLOBAL as GLOBAL
from vfd.cli.quickargs import NotSure, Opt, global_options, unexpected
from vfd.cli.sizes import size_option
from vfd.cli.state import CliState
from vfd.errors import VfdError

RUN = (
    Opt(("--mount", "-m"), "mount", multiple=True),
    Opt(("--cpu",), "cpu", parser=runflow.cpu_option),
    Opt(("--mem", "--memory"), "memory", parser=size_option),
    Opt(("--gpu",), "gpu", parser=runflow.amount_option),
    Opt(("--fgpu",), "fgpu", parser=runflow.amount_option),
    Opt(("--slot",), "slot", multiple=True),
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


def _parse(argv: list[str]) -> tuple[CliState, dict[str, Any], bool]:
    """The state, request body and ``--detach`` of ``argv`` (``NotSure`` when unsure)."""
    given, at = global_options(argv)
    if argv[at : at + 1] != ["run"]:
        raise NotSure
    options, at = quickargs.options(argv, at + 1, RUN)
    if at >= len(argv):
        raise NotSure  # no IMAGE: typer says so
    detach = bool(options.pop("detach", False))
    cli = CliState(**given, json=bool(options.pop("json_output", False)))
    try:
        body = runflow.request_body(argv[at], argv[at + 1 :], **options)
    except Exception:  # an -e entry refused: typer says why
        raise NotSure from None
    return cli, body, detach


def run(argv: list[str]) -> int | None:
    """Run ``vfd ARGV`` when it is a ``vfd run`` this module reads; its exit status, or None
    for typer to read it."""
    try:
        cli, body, detach = _parse(argv)
    except NotSure:
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
        print_error(unexpected(exc), as_json=cli.json)
        return 1
    finally:
        cli.close()
