"""``vfd vfolder web``: folders served by the web file manager.

``vfd vfolder web NAME...`` makes a storage-only session whose file manager serves those
folders and prints the link to open (it carries the session's random token);
``vfd session destroy ID`` ends it (docs/apps.md "Web file manager").
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from vfd.cli.client import segment
from vfd.cli.context import JsonOption, use


def web(
    ctx: typer.Context,
    folders: Annotated[
        list[str],
        typer.Argument(
            metavar="NAME[:DIR][:ro]...",
            help="Folders to serve: each appears at the top level as NAME (or DIR); :ro "
            "serves it read-only.",
            show_default=False,
        ),
    ],
    name: Annotated[
        str | None, typer.Option("--name", metavar="NAME", help="The session's name.")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            min=1024,
            max=65535,
            metavar="PORT",
            help="The port to serve on when it is free (default: one of the node's app ports).",
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Serve folders in a web file manager: a storage session (no container) and its link.

    Open the link it prints in a browser: it carries the session's token, which the
    browser then keeps as a cookie. `vfd session destroy ID` ends it.
    """
    cli = use(ctx, json_output)
    body: dict[str, Any] = {"mounts": list(folders), "app": "filebrowser"}
    if name is not None:
        body["name"] = name
    if port is not None:
        body["port"] = port
    client = cli.client()
    made = client.post("/v1/sessions/storage", body)
    link = client.get(f"/v1/sessions/{segment(str(made['id']))}/filebrowser")
    short = made.get("short_id")
    cli.emit(
        {"session": made, "url": link["url"]},
        lambda: (
            f"Session {short} ({made.get('name')}) serves the web file manager at:\n"
            f"{link['url']}\n"
            f"End it: vfd session destroy {short}"
        ),
    )
