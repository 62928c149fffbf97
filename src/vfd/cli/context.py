"""What one ``vfd`` invocation knows (global options, config, client, output mode), and the
option types several command groups share.

The root command stores a :class:`CliState` in ``ctx.obj``; every leaf command starts with
``cli = use(ctx, json_output)``. The config is loaded and the client opened only when a
command needs them, so ``vfd --help`` and ``vfd up`` never touch the daemon's socket.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vfd import wirenames
from vfd.cli.output import make_console, print_json
from vfd.enums import Permission

if TYPE_CHECKING:  # each imported when first used: most commands need only some of them
    from rich.console import Console

    from vfd.cli.client import VfdClient
    from vfd.config import Config

JsonOption = Annotated[
    bool,
    typer.Option(
        "--json", help="Print the API's JSON result to stdout instead of a table or message."
    ),
]


@dataclass
class CliState:
    """Global options of the root command and what is built from them, lazily."""

    state_dir: Path | None = None
    config_file: Path | None = None
    act_as: str | None = None
    json: bool = False
    _console: Console | None = None
    _config: Config | None = None
    _client: VfdClient | None = None

    @property
    def console(self) -> Console:
        """The rich console for people-facing output (made on first use)."""
        if self._console is None:
            self._console = make_console()
        return self._console

    def config(self) -> Config:
        """The configuration (``--state-dir``/``--config``/``VFD_*``); loaded once."""
        if self._config is None:
            from vfd.config import load_config

            self._config = load_config(config_file=self.config_file, state_dir=self.state_dir)
        return self._config

    def client(self) -> VfdClient:
        """A client of the daemon named by the config; closed when the command ends."""
        if self._client is None:
            from vfd.cli.client import VfdClient

            self._client = VfdClient(self.config().api_socket, act_as=self.act_as)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def emit(self, result: dict[str, Any], human: Callable[[], object]) -> None:
        """Print ``result`` as JSON with ``--json``, else call ``human`` to render it.

        ``human`` may return a string, which is printed as a message.
        """
        if self.json:
            print_json(result)
            return
        rendered = human()
        if isinstance(rendered, str):  # a message: written as it is (rich adds nothing to it)
            sys.stdout.write(wirenames.readable(rendered) + "\n")
            sys.stdout.flush()


def state_of(ctx: typer.Context) -> CliState:
    """The invocation's state (made by the root command; a bare one for a lone sub-app)."""
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
        root.call_on_close(root.obj.close)
    return root.obj


def use(ctx: typer.Context, json_output: bool) -> CliState:
    """Start a leaf command: record its ``--json`` and return the state."""
    cli = state_of(ctx)
    cli.json = json_output
    return cli


PermissionArg = Annotated[
    Permission, typer.Argument(help="Permission: ro (read), rw (read-write), wd (owner).")
]
