"""``vfd admin uploads prune``: remove the part files of uploads nobody finished."""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer

from vfd.cli.context import JsonOption, use
from vfd.cli.output import table
from vfd.cli.sizes import format_size

app = typer.Typer(help="Abandoned uploads: part files of uploads never finished.")

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$", re.IGNORECASE)
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """Seconds in ``90``, ``90s``, ``30m``, ``12h`` or ``7d``; a usage error otherwise."""
    match = _DURATION.match(text)
    if match is None:
        raise typer.BadParameter(
            f"{text!r} is not a duration: use seconds or a whole number with s, m, h or d "
            "(e.g. 12h, 7d)"
        )
    return int(match.group(1)) * _SECONDS[match.group(2).lower()]


@app.command("prune")
def prune(
    ctx: typer.Context,
    older_than: Annotated[
        int,
        typer.Option(
            "--older-than",
            parser=parse_duration,
            metavar="DURATION",
            help="Remove part files not written to for this long (12h, 7d, …).",
        ),
    ] = "7d",  # type: ignore[assignment]
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list what would be removed.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Remove abandoned upload part files from every ready folder on this node.

    Interrupted uploads keep a hidden part file to resume from, which counts against quota.
    """
    cli = use(ctx, json_output)
    body: dict[str, Any] = {"older_than": older_than, "dry_run": dry_run}
    result = cli.client().post("/v1/admin/uploads/prune", body)

    def human() -> str:
        rows = [
            [r["vfolder"], r["path"], format_size(r["bytes"]), f"{r['idle_seconds'] // 3600} h"]
            for r in result["removed"]
        ]
        table(cli.console, ["vfolder", "part file", "size", "idle"], rows, empty="none")
        verb = "Would remove" if result["dry_run"] else "Removed"
        return f"{verb} {len(rows)} part file(s), {format_size(result['bytes'])}."

    cli.emit(result, human)
