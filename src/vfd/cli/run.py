"""``vfd run``: start a compute session and, unless detached, follow it as ``docker run`` does.

The typer command; what it does once its arguments are parsed is :mod:`vfd.cli.runflow`, which
the console script's fast path (:mod:`vfd.cli.quickrun`) calls the same way.

Without ``-d`` the container's stdout and stderr are written to ours as they come, and the
command exits with the container's exit code, so ``vfd run IMAGE CMD`` can stand where the
command would. vfd's own failures exit 125 (the request refused, or the session ended
``cancelled``/``error``: ``error: session <id> <status>: <reason> [<plugin>]``). The first
Ctrl-C destroys the session and waits until it stopped (exit 130); a second kills it at once;
a third stops waiting.
"""

from __future__ import annotations

from typing import Annotated

import typer

from vfd.cli import runflow
from vfd.cli.context import JsonOption, use
from vfd.cli.durations import duration_option
from vfd.cli.session import EnvOption
from vfd.cli.sizes import size_option


def run(
    ctx: typer.Context,
    image: Annotated[
        str,
        typer.Argument(
            help="The image to run (a local image: see `vfd image list`).", show_default=False
        ),
    ],
    command: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[CMD]...",
            help="The command and its arguments (everything after IMAGE, options included); "
            "default: the image's own.",
            show_default=False,
        ),
    ] = None,
    mount: Annotated[
        list[str] | None,
        typer.Option(
            "--mount",
            "-m",
            metavar="NAME[:TARGET][:ro]",
            help="Mount folder NAME at /home/work/NAME, or at TARGET (relative: under "
            "/home/work); :ro mounts it read-only. Repeatable.",
            show_default=False,
        ),
    ] = None,
    cpu: Annotated[
        float | None,
        typer.Option(
            "--cpu",
            metavar="N",
            parser=runflow.cpu_option,
            help="CPUs to reserve and limit it to (default: the preset's, else 1).",
        ),
    ] = None,
    memory: Annotated[
        int | None,
        typer.Option(
            "--mem",
            "--memory",
            metavar="SIZE",
            parser=size_option,
            help="Memory limit, e.g. 512m, 2g, 1GiB (default: the preset's, else no limit).",
        ),
    ] = None,
    gpu: Annotated[
        float | None,
        typer.Option(
            "--gpu",
            metavar="N",
            parser=runflow.amount_option,
            help="Whole GPUs to hold (cuda.device; a node offering whole devices).",
            show_default=False,
        ),
    ] = None,
    fgpu: Annotated[
        float | None,
        typer.Option(
            "--fgpu",
            metavar="F",
            parser=runflow.amount_option,
            help="Fractional GPU shares to hold, in steps of 0.1 (cuda.shares; a node "
            "offering shares). Not with --gpu.",
            show_default=False,
        ),
    ] = None,
    slot: Annotated[
        list[str] | None,
        typer.Option(
            "--slot",
            metavar="NAME=AMOUNT",
            help="An accelerator slot to hold (e.g. cuda.shares=0.5; `vfd plugins` lists "
            "them). Repeatable.",
            show_default=False,
        ),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option(
            "--group",
            metavar="NAME",
            help="The resource group to run in (default: [sessions] group of the daemon's "
            "config, else 'default').",
        ),
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            "--preset",
            metavar="NAME",
            help="A session preset giving cpu, memory and accelerator slots (`vfd admin preset "
            "list`); --cpu, --mem and --gpu/--fgpu/--slot override it.",
        ),
    ] = None,
    lifetime: Annotated[
        float | None,
        typer.Option(
            "--lifetime",
            metavar="DURATION",
            parser=duration_option,
            help="End the session this long after it started (90s, 30m, 2h, 1d; at most the "
            "policy's max lifetime).",
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            metavar="NAME",
            help="Name the session (unique among your live sessions; default: a made-up one).",
        ),
    ] = None,
    env: EnvOption = None,
    remove: Annotated[
        bool,
        typer.Option("--rm", help="Remove the container when the session ends."),
    ] = False,
    detach: Annotated[
        bool,
        typer.Option("--detach", "-d", help="Print the session's id and name and return at once."),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Run a command in a new session; follow its output and exit with its exit code.

    Options go before IMAGE; everything after IMAGE is the command.
    With -d: print the session's short id and name (--json: the session) and return.
    Exit 125: vfd failed (refused, or the session was cancelled or failed).
    Exit 130: interrupted (Ctrl-C destroyed the session).
    """
    cli = use(ctx, json_output)
    body = runflow.request_body(
        image,
        command,
        mount=mount,
        cpu=cpu,
        memory=memory,
        group=group,
        preset=preset,
        lifetime=lifetime,
        name=name,
        env=env,
        remove=remove,
        gpu=gpu,
        fgpu=fgpu,
        slot=slot,
    )
    status = runflow.start(cli, body, detach=detach)
    if status:
        raise typer.Exit(status)


def register(app: typer.Typer) -> None:
    """Add ``run`` to the root command (options before IMAGE; the rest is the command)."""
    app.command(
        "run",
        context_settings={"allow_interspersed_args": False},
    )(run)
