"""The root ``vfd`` command: global options, sub-commands, and the one error choke point.

Every ``VfdError`` raised by a command (from the daemon, the config, the client) ends in
:meth:`VfdGroup.invoke`: printed as ``error: <message> [<code>]`` on stderr, or as the JSON
error shape on stdout under ``--json``, and exit status 1. Usage errors (an unknown option or
command, a missing argument, a bad value) are printed the same way with the code
``usage_error`` and keep click's exit status 2. Any other exception escaping a command (a bug,
or an answer of a shape the command did not expect) is printed the same way with the code
``internal`` and exit status 1: the CLI never prints a traceback, unless ``VFD_TRACEBACK=1``
asks for one.

The console script's root group (:class:`LazyVfdGroup`) imports a sub-command's module only
when that command runs, and lists them all in its help from :mod:`vfd.cli.commands`; its help
is click's plain help (typer's rich help imports a Markdown renderer). :func:`full_app` (also
``vfd.cli.main.app``) is the same command with every module imported, for tests and docs.
"""

from __future__ import annotations

import errno
import functools
import os
from collections.abc import Sequence
from difflib import get_close_matches
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from typer._click.core import Command
from typer._click.core import Context as ClickContext  # typer vendors click
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
from typer._click.formatting import HelpFormatter
from typer.core import TyperCommand, TyperGroup, TyperOption

import vfd
from vfd.cli import coercion, commands
from vfd.cli.context import CliState, state_of
from vfd.cli.output import print_error
from vfd.cli.quickargs import unexpected as _unexpected
from vfd.errors import ErrorCode, VfdError

USAGE_EXIT = 2


def _usage_failed(exc: UsageError, argv: Sequence[str]) -> NoReturn:
    """Print a usage error as every other error (``--json`` anywhere on the command line gives
    the JSON shape: it was not parsed when parsing failed) and exit 2."""
    message = exc.format_message().rstrip(".")
    if exc.ctx is not None:
        message += f" (see `{exc.ctx.command_path} --help`)"
    print_error(VfdError(ErrorCode.USAGE_ERROR, message), as_json="--json" in argv)
    raise typer.Exit(USAGE_EXIT)


class VfdGroup(TyperGroup):
    """The root group; turns a ``VfdError`` from any sub-command into output and exit 1, and a
    usage error anywhere into the same form with exit 2."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: ClickContext | None = None,
        **extra: Any,
    ) -> ClickContext:
        argv = list(args)
        try:
            ctx = super().make_context(info_name, args, parent=parent, **extra)
        except NoArgsIsHelpError:
            raise
        except UsageError as exc:
            _usage_failed(exc, argv)
        ctx.meta["vfd.argv"] = argv
        return ctx

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except VfdError as exc:
            cli = ctx.obj if isinstance(ctx.obj, CliState) else None
            print_error(exc, as_json=cli is not None and cli.json)
            raise typer.Exit(1) from None
        except NoArgsIsHelpError:
            raise
        except UsageError as exc:
            _usage_failed(exc, ctx.meta.get("vfd.argv", ()))
        except (ClickException, typer.Exit, typer.Abort, EOFError):
            raise  # click's own endings (EOFError: a prompt's input ended)
        except Exception as exc:
            broken_pipe = isinstance(exc, OSError) and exc.errno == errno.EPIPE
            if broken_pipe or os.environ.get("VFD_TRACEBACK") == "1":
                raise  # click quietly ends on a reader gone (`vfd ... | head`)
            cli = ctx.obj if isinstance(ctx.obj, CliState) else None
            print_error(_unexpected(exc), as_json=cli is not None and cli.json)
            raise typer.Exit(1) from None


def _flags_show_no_type() -> None:
    """A flag takes no value, so its help line shows no type (typer's rich help prints
    ``<bool>`` after every flag, ``--help`` included)."""
    shown = TyperOption.display_type_rich
    if getattr(shown, "vfd_flags_fixed", False):
        return

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    display_type_rich.vfd_flags_fixed = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


class LazyVfdGroup(VfdGroup):
    """The root group of the ``vfd`` console script: a sub-command's module is imported only
    when that command runs; its help lists every sub-command from :mod:`vfd.cli.commands`."""

    _listing = False
    _next: str | None = None  # the word after the sub-command's name (see commands.load)

    def list_commands(self, ctx: ClickContext) -> list[str]:
        return list(commands.COMMANDS)

    def get_command(self, ctx: ClickContext, cmd_name: str) -> Command | None:
        entry = commands.COMMANDS.get(cmd_name)
        if entry is None:
            return None
        if self._listing:  # the help's list of commands needs their one line only
            return TyperCommand(cmd_name, help=entry.help)
        if cmd_name not in self.commands:
            self.commands[cmd_name] = commands.load(cmd_name, only=self._next)
        return self.commands[cmd_name]

    def format_help(self, ctx: ClickContext, formatter: HelpFormatter) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def resolve_command(
        self, ctx: ClickContext, args: list[str]
    ) -> tuple[str | None, Command | None, list[str]]:
        self._next = args[1] if len(args) > 1 else None
        try:
            return super().resolve_command(ctx, args)
        except UsageError as exc:  # typer suggests from the loaded commands only
            matches = get_close_matches(args[0], list(commands.COMMANDS)) if args else []
            if matches and "Did you mean" not in exc.message:
                suggestions = ", ".join(f"{m!r}" for m in matches)
                exc.message = f"{exc.message.rstrip('.')}. Did you mean {suggestions}?"
            raise


_flags_show_no_type()
coercion.install()


def _root_app(cls: type[VfdGroup]) -> typer.Typer:
    return typer.Typer(
        cls=cls,
        name="vfd",
        help="Virtual folders for compute clusters: folders, quotas, mounts and sessions.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"vfd {vfd.__version__}")
        raise typer.Exit()


def root(
    ctx: typer.Context,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir",
            envvar="VFD_STATE_DIR",
            metavar="DIR",
            help="Keep everything (database, sockets, mount, hosts) under DIR instead of the "
            "system paths; as started by `vfd up --state-dir DIR`.",
        ),
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            envvar="VFD_CONFIG",
            metavar="FILE",
            help="Read this vfd.toml (default: DIR/vfd.toml with --state-dir, else "
            "/etc/vfd/vfd.toml).",
        ),
    ] = None,
    act_as: Annotated[
        str | None,
        typer.Option(
            "--as",
            metavar="EMAIL",
            help="Act for this user (admins only): the request runs with the user's rights.",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_show_version,
            is_eager=True,
            help="Print the vfd version and exit.",
        ),
    ] = False,
) -> None:
    """vfd: virtual folders with quotas and read-only views, for users and projects."""
    cli = state_of(ctx)
    cli.state_dir = state_dir
    cli.config_file = config_file
    cli.act_as = act_as


@functools.cache
def full_app() -> typer.Typer:
    """The whole ``vfd`` app, every command module imported (tests and docs walk it)."""
    whole = _root_app(VfdGroup)
    whole.callback()(root)
    commands.attach_all(whole)
    return whole


def lazy_app() -> typer.Typer:
    """The ``vfd`` app of the console script: sub-commands imported when they run."""
    lazy = _root_app(LazyVfdGroup)
    lazy.callback()(root)
    return lazy


def __getattr__(name: str) -> Any:
    if name == "app":
        return full_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    """The ``vfd`` console script."""
    command = typer.main.get_command(lazy_app())
    command(prog_name="vfd")
