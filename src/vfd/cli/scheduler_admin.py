"""``vfd admin scheduler list|simulate``: the schedulers the daemon offers, and any installed
scheduler run on a snapshot from a file, here, without a daemon (docs/schedulers.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from vfd.cli.context import JsonOption, use
from vfd.cli.output import table
from vfd.cli.sizes import format_size
from vfd.errors import ErrorCode, VfdError

app = typer.Typer(
    help="Schedulers: those the daemon offers; simulate one on a snapshot.",
    no_args_is_help=True,
)


@app.command("list")
def list_(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """List the schedulers the daemon's plugins register (name, plugin, description)."""
    cli = use(ctx, json_output)
    result = cli.client().get("/v1/plugins")
    schedulers = {"schedulers": result.get("schedulers") or []}

    def human() -> None:
        table(
            cli.console,
            ("SCHEDULER", "PLUGIN", "DESCRIPTION"),
            [(s["name"], s["plugin"], s.get("description")) for s in schedulers["schedulers"]],
            empty="no schedulers",
        )

    cli.emit(schedulers, human)


@app.command("simulate")
def simulate(
    ctx: typer.Context,
    input_file: Annotated[
        Path,
        typer.Option(
            "--input",
            metavar="FILE.json",
            help="The snapshot: agents, pending sessions, allocations, limits (- reads stdin; "
            "the format is in docs/schedulers.md).",
            show_default=False,
        ),
    ],
    scheduler: Annotated[
        str,
        typer.Option(
            "--scheduler",
            metavar="NAME",
            help="An installed scheduler (fifo, lifo, drf, or one a plugin adds).",
        ),
    ] = "fifo",
    json_output: JsonOption = False,
) -> None:
    """Run an installed scheduler on a snapshot read from a file and print what it would place
    where, and why each other session would wait.

    Runs here, without the daemon: the scheduler is loaded from the installed plugins as the
    daemon loads it, with this node's config ([plugins] block, [plugins.NAME] options). Compare
    schedulers on the same file before switching a resource group to one.
    """
    cli = use(ctx, json_output)
    from vfd.plugins.manager import build_manager
    from vfd.scheduling import simulate as sim

    source = "stdin" if str(input_file) == "-" else str(input_file)
    document = _read(input_file, source)
    simulation = sim.parse(document, source)
    plugins = build_manager(cli.config())
    chosen = plugins.scheduler(scheduler)
    result = sim.report(simulation, sim.run(chosen, simulation), scheduler)

    def human() -> None:
        placed, waiting = result["placed"], result["waiting"]
        cli.console.print(
            f"{scheduler} on group {result['group']}: {len(placed)} placed, {len(waiting)} waiting",
            markup=False,
            highlight=False,
        )
        table(
            cli.console,
            ("SESSION", "USER", "AGENT", "CPU", "MEMORY"),
            [
                (p["session"], p["user"], p["agent"], f"{p['cpu']:g}", format_size(p["memory"]))
                for p in placed
            ],
            empty="nothing placed",
        )
        for w in waiting:
            cli.console.print()
            cli.console.print(f"{w['session']} ({w['user']}) waits:", markup=False, highlight=False)
            for v in w["verdicts"]:
                mark = "ok" if v["ok"] else "NO"
                cli.console.print(
                    f"  {mark:<3}{v['name']:<19}{v['reason']}",
                    markup=False,
                    highlight=False,
                    soft_wrap=True,
                )
        if result["unaccounted"]:
            cli.console.print()
            cli.console.print(
                "neither placed nor said to wait (a scheduler bug): "
                + ", ".join(result["unaccounted"]),
                markup=False,
            )

    cli.emit(result, human)


def _read(path: Path, source: str) -> Any:
    try:
        text = sys.stdin.read() if source == "stdin" else path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT, f"cannot read {source}: {exc}", path=source
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT,
            f"{source}: $: not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            path="$",
        ) from None
