"""``vfd session apps`` and ``vfd session app``: what a session may run, and starting or
stopping one of its apps (docs/apps.md "Service apps").

Added to the ``vfd session`` group when :mod:`vfd.cli.session` is imported.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from vfd.cli.client import segment
from vfd.cli.context import JsonOption, use
from vfd.cli.output import table
from vfd.cli.session import RefArg, app, session_path

APP_COLUMNS = ("NAME", "KIND", "PORT", "STATUS", "URL")


def _port(entry: dict[str, Any]) -> str:
    port = entry.get("container_port")
    protocol = entry.get("protocol")
    return f"{port}/{protocol}" if port else "-"


def app_rows(entries: list[dict[str, Any]]) -> list[list[object]]:
    rows: list[list[object]] = []
    for entry in entries:
        running = entry.get("app") or {}
        status = str(entry.get("status"))
        if not entry.get("startable") and status == "available":
            status = "not served"
        rows.append(
            [
                entry.get("name"),
                entry.get("kind"),
                _port(entry),
                status,
                entry.get("url") or running.get("endpoint") or "-",
            ]
        )
    return rows


@app.command("apps")
def apps(ctx: typer.Context, ref: RefArg, json_output: JsonOption = False) -> None:
    """List the apps a session may run: its image's services and the plugins' apps.

    A running app shows where it is reached; a service's URL carries its token.
    An image declares its services with the label ai.vfd.service-ports.
    """
    cli = use(ctx, json_output)
    result = cli.client().get(f"{session_path(ref)}/apps")

    def human() -> None:
        if result.get("services_error"):
            cli.console.print(f"warning: {result['services_error']}", markup=False)
        table(cli.console, APP_COLUMNS, app_rows(result.get("apps") or []), empty="no apps")

    cli.emit(result, human)


@app.command("app")
def app_(
    ctx: typer.Context,
    ref: RefArg,
    name: Annotated[
        str,
        typer.Argument(
            metavar="NAME",
            help="The app: a service of the image, filebrowser or sftp.",
            show_default=False,
        ),
    ],
    stop: Annotated[
        bool, typer.Option("--stop", help="Stop the app instead of starting it.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Start an app of a running session and print where it is reached.

    A service prints its URL: vfd's proxy serves it, the app's token in it.
    Starting a running service prints the same URL again.
    filebrowser prints its link with its token; sftp its address (see sftp-key).
    """
    cli = use(ctx, json_output)
    path = f"{session_path(ref)}/apps/{segment(name)}"
    if stop:
        ended = cli.client().request("DELETE", path)
        cli.emit(ended, lambda: f"App {name} is {ended.get('status')}")
        return
    started = cli.client().post(path)
    cli.emit(started, lambda: str(started.get("url") or started.get("endpoint") or ""))
