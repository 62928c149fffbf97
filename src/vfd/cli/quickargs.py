"""Command lines read without typer: the option tables and the reader the console script's
fast paths share (:mod:`vfd.cli.quick`, :mod:`vfd.cli.quickrun`, :mod:`vfd.cli.quickcmds`).

A fast path reads a command line only when it is sure that typer would read it the same way:
every word is one its tables know, in a form typer takes; anything else raises
:class:`NotSure`, and typer reads the command line instead (and prints its usage, help or
error as ever). The tables are checked against the typer commands by the tests
(``tests/cli/test_quickrun.py``, ``tests/cli/test_quick.py``).
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vfd.cli.output import print_error
from vfd.cli.state import CliState
from vfd.errors import ErrorCode, VfdError


class Opt:
    """One option as typer declares it: its names, where its value goes, and its kind."""

    __slots__ = ("dest", "envvar", "multiple", "names", "parser", "takes_value")

    def __init__(
        self,
        names: tuple[str, ...],
        dest: str,
        takes_value: bool = True,
        multiple: bool = False,
        parser: Callable[[str], Any] | None = None,
        envvar: str | None = None,
    ) -> None:
        self.names = names
        self.dest = dest
        self.takes_value = takes_value
        self.multiple = multiple
        self.parser = parser
        self.envvar = envvar


GLOBAL = (
    Opt(("--state-dir",), "state_dir", parser=Path, envvar="VFD_STATE_DIR"),
    Opt(("--config",), "config_file", parser=Path, envvar="VFD_CONFIG"),
    Opt(("--as",), "act_as"),
)
"""The root's options read here (``--version`` and ``--help`` are typer's)."""


class NotSure(Exception):
    """The command line is not one a fast path reads: typer reads it."""


def options(argv: list[str], at: int, table: tuple[Opt, ...]) -> tuple[dict[str, Any], int]:
    """Read options from ``argv[at:]`` up to the first word that is not one; the values by
    ``dest`` and where that word is."""
    by_name = {name: opt for opt in table for name in opt.names}
    values: dict[str, Any] = {}
    while at < len(argv) and argv[at].startswith("-") and argv[at] != "-":
        word = argv[at]
        name, eq, attached = word.partition("=") if word.startswith("--") else (word, "", "")
        opt = by_name.get(name)
        if opt is None:  # --help, -h, --, an unknown option, -dm, -mNAME
            raise NotSure
        at += 1
        if not opt.takes_value:
            if eq:
                raise NotSure
            values[opt.dest] = True
            continue
        if eq:
            text = attached
        elif at < len(argv):
            text, at = argv[at], at + 1
        else:
            raise NotSure
        if not text:  # an empty value: what typer makes of it is typer's business
            raise NotSure
        try:
            value = text if opt.parser is None else opt.parser(text)
        except Exception:  # the parser's usage error: typer prints it
            raise NotSure from None
        if opt.multiple:
            values.setdefault(opt.dest, []).append(value)
        else:
            values[opt.dest] = value
    return values, at


def global_options(argv: list[str]) -> tuple[dict[str, Any], int]:
    """The root's options at the start of ``argv`` (their environment variables where not
    given), by ``dest``, and where the sub-command's name is."""
    given, at = options(argv, 0, GLOBAL)
    for opt in GLOBAL:
        if opt.dest not in given and opt.envvar and (text := os.environ.get(opt.envvar)):
            given[opt.dest] = Path(text)
    return given, at


def finish(cli: CliState, command: Callable[[], None]) -> int:
    """Run ``command`` and end it as the typer path ends a command: its exit status, a
    ``VfdError`` printed by :func:`print_error` (exit 1), an unexpected exception printed as
    ``internal`` (exit 1, its traceback with ``VFD_TRACEBACK=1``), a reader gone quietly
    (exit 1), Ctrl-C with 130; the client closed in every case."""
    try:
        command()
        return 0
    except VfdError as exc:  # as the root command ends every command's VfdError
        print_error(exc, as_json=cli.json)
        return 1
    except KeyboardInterrupt:  # as typer ends a command interrupted
        return 130
    except Exception as exc:
        if isinstance(exc, OSError) and exc.errno == errno.EPIPE:
            # as click: nothing more said (the console script's last flush ignores the pipe)
            sys.stdout = _Quiet(sys.stdout)
            sys.stderr = _Quiet(sys.stderr)
            return 1
        if os.environ.get("VFD_TRACEBACK") == "1":
            raise
        print_error(unexpected(exc), as_json=cli.json)
        return 1
    finally:
        cli.close()


class _Quiet:
    """A stream whose flush says nothing of a reader gone (click's ``PacifyFlushWrapper``)."""

    def __init__(self, wrapped: Any) -> None:
        self.wrapped = wrapped

    def flush(self) -> None:
        try:
            self.wrapped.flush()
        except OSError as exc:
            if exc.errno != errno.EPIPE:
                raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


def unexpected(exc: Exception) -> VfdError:
    """The error printed for an exception no command expected (no traceback: people get
    what failed, and ``VFD_TRACEBACK=1`` shows where)."""
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, KeyError | IndexError | TypeError | AttributeError):
        what = f"the daemon's answer has an unexpected shape ({what})"
    return VfdError(
        ErrorCode.INTERNAL,
        f"the vfd command failed unexpectedly: {what} (VFD_TRACEBACK=1 shows where)",
    )
