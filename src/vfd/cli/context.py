"""Typer's side of what one ``vfd`` invocation knows (:class:`~vfd.cli.state.CliState`: global
options, config, client, output mode), and the option types several command groups share.

The root command stores a :class:`CliState` in ``ctx.obj``; every leaf command starts with
``cli = use(ctx, json_output)``. The config is loaded and the client opened only when a
command needs them, so ``vfd --help`` and ``vfd up`` never touch the daemon's socket.
"""

from __future__ import annotations

from typing import Annotated

import typer

from vfd.cli.state import CliState as CliState
from vfd.enums import Permission

JsonOption = Annotated[
    bool,
    typer.Option(
        "--json", help="Print the API's JSON result to stdout instead of a table or message."
    ),
]


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
