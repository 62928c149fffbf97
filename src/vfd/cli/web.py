"""``vfd vfolder web``: folders served by the web file manager.

``vfd vfolder web NAME...`` makes a storage-only session whose file manager serves those
folders and prints the link to open (it carries the session's random token);
``vfd session destroy ID`` ends it (docs/apps.md "Web file manager").
"""

from __future__ import annotations

import typer

from vfd.cli.client import segment
from vfd.cli.context import JsonOption, use
from vfd.cli.sftp import FoldersArg, PortOpt, SessionNameOpt, storage_ask


def web(
    ctx: typer.Context,
    folders: FoldersArg,
    name: SessionNameOpt = None,
    port: PortOpt = None,
    json_output: JsonOption = False,
) -> None:
    """Serve folders in a web file manager: a storage session (no container) and its link.

    Open the link it prints in a browser: it carries the session's token, which the
    browser then keeps as a cookie. `vfd session destroy ID` ends it.
    """
    cli = use(ctx, json_output)
    client = cli.client()
    made = client.post("/v1/sessions/storage", storage_ask(folders, "filebrowser", name, port))
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
