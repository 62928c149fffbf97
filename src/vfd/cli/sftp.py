"""``vfd vfolder sftp`` and ``vfd session sftp-key``: folders served over SFTP.

``vfd vfolder sftp NAME...`` makes a storage-only session whose SFTP server serves those
folders (docs/apps.md "SFTP"); ``vfd session sftp-key ID`` prints the private key of a
session's SFTP server and the command that connects with it.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from vfd.cli.client import segment
from vfd.cli.context import CliState, JsonOption, use
from vfd.errors import ErrorCode, VfdError

FoldersArg = Annotated[
    list[str],
    typer.Argument(
        metavar="NAME[:DIR][:ro]...",
        help="Folders to serve: each appears at the app's root as NAME (or DIR); :ro serves "
        "it read-only.",
        show_default=False,
    ),
]
SessionNameOpt = Annotated[
    str | None, typer.Option("--name", metavar="NAME", help="The session's name.")
]
PortOpt = Annotated[
    int | None,
    typer.Option(
        "--port",
        min=1024,
        max=65535,
        metavar="PORT",
        help="The port to serve on when it is free (default: one of the node's app ports).",
    ),
]
"""The arguments of the commands that start a storage session (``vfd vfolder sftp``,
``vfd vfolder web``)."""


def storage_ask(folders: list[str], app: str, name: str | None, port: int | None) -> dict[str, Any]:
    """The body of ``POST /v1/sessions/storage`` for ``app`` serving ``folders``."""
    body: dict[str, Any] = {"mounts": list(folders), "app": app}
    if name is not None:
        body["name"] = name
    if port is not None:
        body["port"] = port
    return body


KeyFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--key-file",
        "-o",
        metavar="FILE",
        help="Write the private key to FILE (mode 0600; an existing FILE is replaced) and print "
        "the command that uses it.",
        show_default=False,
    ),
]


def write_key(path: Path, key: str) -> None:
    """Write ``key`` to ``path`` with mode 0600 (never through a symbolic link), replacing
    what was there."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise VfdError(
            ErrorCode.INVALID_PATH,
            f"cannot write the key to {path}: {exc.strerror}",
            path=str(path),
        ) from None
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, key.encode())
    finally:
        os.close(fd)


def command_with(key: dict[str, Any], key_file: str) -> str:
    """The ``sftp`` command line that connects with the key at ``key_file``."""
    target = f"{key['user']}@{key['host']}"
    return f"sftp -i {shlex.quote(key_file)} -P {key['port']} {shlex.quote(target)}"


def _emit_key(cli: CliState, key: dict[str, Any], key_file: Path | None) -> None:
    if key_file is not None:
        write_key(key_file, key["private_key"])
        line = command_with(key, str(key_file))
        cli.emit({**key, "key_file": str(key_file), "command": line}, lambda: line)
        return
    if cli.json:
        cli.emit(key, lambda: None)
        return
    sys.stdout.write(key["private_key"])
    sys.stdout.flush()
    name = str(key.get("key_file") or "id_container")
    print(
        f"# save the key above as {name} (mode 0600), then: {command_with(key, name)}",
        file=sys.stderr,
    )


def sftp_key(
    ctx: typer.Context,
    ref: Annotated[
        str,
        typer.Argument(
            metavar="ID",
            help="The session: its id, a prefix of 4+ hex digits, or its name.",
            show_default=False,
        ),
    ],
    key_file: KeyFileOpt = None,
    json_output: JsonOption = False,
) -> None:
    """Print the private key of a session's SFTP server and the command that connects.

    The key goes to stdout and the command to stderr (as a comment), so that
    `vfd session sftp-key ID > id_container` saves the key alone; -o FILE writes it for you.
    """
    if not ref:
        raise typer.BadParameter("give the session's id or name", param_hint="ID")
    cli = use(ctx, json_output)
    key = cli.client().get(f"/v1/sessions/{segment(ref)}/sftp-key")
    _emit_key(cli, key, key_file)


def sftp(
    ctx: typer.Context,
    folders: FoldersArg,
    name: SessionNameOpt = None,
    port: PortOpt = None,
    key_file: KeyFileOpt = None,
    json_output: JsonOption = False,
) -> None:
    """Serve folders over SFTP: a storage session (no container) with an SFTP server.

    Prints the session and how to connect; `vfd session sftp-key ID` prints its key,
    `vfd session destroy ID` ends it. It also ends by itself after a while without transfers.
    """
    cli = use(ctx, json_output)
    client = cli.client()
    made = client.post("/v1/sessions/storage", storage_ask(folders, "sftp", name, port))
    short = made.get("short_id")
    if key_file is not None:
        key = client.get(f"/v1/sessions/{segment(str(made['id']))}/sftp-key")
        write_key(key_file, key["private_key"])
        line = command_with(key, str(key_file))
        cli.emit(
            {"session": made, "key_file": str(key_file), "command": line},
            lambda: f"Session {short} ({made.get('name')}) serves over SFTP:\n{line}",
        )
        return
    apps = [a for a in made.get("apps") or [] if a.get("name") == "sftp"]
    endpoint = apps[0].get("endpoint") if apps else None
    cli.emit(
        made,
        lambda: (
            f"Session {short} ({made.get('name')}) serves over SFTP at {endpoint}\n"
            f"Its key and the command to connect: vfd session sftp-key {short} -o id_container\n"
            f"End it: vfd session destroy {short}"
        ),
    )
