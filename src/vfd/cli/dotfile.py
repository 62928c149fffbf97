"""``vfd dotfile create|list|get|update|delete``: files written into ``/home/work`` of sessions.

Each command is one call of ``/v1/dotfiles`` (docs/api.md "Dotfiles"): the user's own dotfiles
by default, a project's with ``--project NAME`` and the whole cluster's with ``--cluster``
(administrators write those; members and everyone read them). Content comes from stdin or
``--file``; ``get`` writes it to stdout as it is. See docs/dotfiles.md.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Annotated, Any, BinaryIO
from urllib.parse import quote

import typer
from typer._click.exceptions import UsageError

from vfd import wirenames
from vfd.cli.context import JsonOption, use
from vfd.cli.output import table
from vfd.cli.sizes import format_size
from vfd.errors import ErrorCode, VfdError

app = typer.Typer(
    help="Dotfiles: files written into /home/work of every session, with their modes.",
    no_args_is_help=True,
)

MAX_READ = 16 * 2**20
"""The most a dotfile may ever hold (the ceiling of ``[sessions] dotfile_max_size``)."""

PathArg = Annotated[
    str,
    typer.Argument(
        help="Path under /home/work (relative, or starting with /home/work/ or ~/).",
        show_default=False,
    ),
]
ProjectOpt = Annotated[
    str | None,
    typer.Option("--project", metavar="NAME", help="A dotfile of project NAME's sessions."),
]
ClusterOpt = Annotated[bool, typer.Option("--cluster", help="A dotfile of every session.")]
FileOpt = Annotated[
    Path | None,
    typer.Option(
        "--file", "-f", metavar="FILE", help="Read the content from FILE instead of stdin."
    ),
]


def _url(path: str) -> str:
    """The API path of dotfile ``path`` (every character of it quoted: ``/`` and dots too, so
    that URL normalisation can never change which file is meant)."""
    if not wirenames.is_text(path):
        raise VfdError(
            ErrorCode.INVALID_PATH,
            f"'{wirenames.escaped(path)}' cannot name a dotfile: it is not UTF-8 text",
            path=path,
        )
    return "/v1/dotfiles/" + quote(path, safe="").replace(".", "%2E")


def _scope(ctx: typer.Context, project: str | None, cluster: bool) -> dict[str, str]:
    if project is not None and cluster:
        raise UsageError("give --project NAME or --cluster, not both", ctx)
    if cluster:
        return {"scope": "cluster"}
    if project is not None:
        return {"scope": "project", "project": project}
    return {"scope": "user"}


def _content(file: Path | None) -> bytes:
    """The bytes of ``file``, or of stdin."""
    data = _given(file)
    if data is None:
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT,
            "give the content on stdin (vfd dotfile create PATH < FILE) or with --file FILE",
            field="file",
        )
    return data


def _given(file: Path | None) -> bytes | None:
    """The bytes of ``file``, or of stdin unless it is a terminal (then None)."""
    if file is not None:
        try:
            with file.open("rb") as stream:
                return _read(stream, str(file))
        except OSError as exc:
            raise VfdError(
                ErrorCode.INVALID_ARGUMENT,
                f"cannot read {file}: {exc.strerror or exc}",
                field="file",
            ) from None
    stdin = typer.get_binary_stream("stdin")
    return None if stdin.isatty() else _read(stdin, "stdin")


def _read(stream: BinaryIO, what: str) -> bytes:
    data = stream.read(MAX_READ + 1)
    if len(data) > MAX_READ:
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT,
            f"{what} holds more than {format_size(MAX_READ)}, more than any dotfile may",
            field="data",
        )
    return data


def _said(verb: str, made: dict[str, Any]) -> str:
    where = made["scope"] if made.get("project") is None else f"project {made['project']}"
    return f"{verb} dotfile {made['path']} ({where}, mode {made['mode']}, {made['size']} bytes)"


@app.command("create")
def create(
    ctx: typer.Context,
    path: PathArg,
    perm: Annotated[
        str, typer.Option("--perm", metavar="MODE", help="Octal permission bits, e.g. 755.")
    ] = "644",
    project: ProjectOpt = None,
    cluster: ClusterOpt = False,
    file: FileOpt = None,
    json_output: JsonOption = False,
) -> None:
    """Create a dotfile from stdin (or --file)."""
    cli = use(ctx, json_output)
    where = _scope(ctx, project, cluster)
    data = _content(file)
    body = {"path": path, "mode": perm, "data": base64.b64encode(data).decode(), **where}
    made = cli.client().post("/v1/dotfiles", body)
    cli.emit(made, lambda: _said("Created", made))


@app.command("list")
def list_(
    ctx: typer.Context,
    project: ProjectOpt = None,
    cluster: ClusterOpt = False,
    json_output: JsonOption = False,
) -> None:
    """List the dotfiles of a scope (your own by default)."""
    cli = use(ctx, json_output)
    result = cli.client().get("/v1/dotfiles", params=_scope(ctx, project, cluster))
    rows = [
        [
            d["path"],
            d["mode"],
            format_size(d["size"]),
            d.get("project") or d["scope"],
            d["updated_at"],
        ]
        for d in result["dotfiles"]
    ]
    columns = ("path", "mode", "size", "scope", "updated")
    cli.emit(result, lambda: table(cli.console, columns, rows, empty="no dotfiles"))


@app.command("get")
def get(
    ctx: typer.Context,
    path: PathArg,
    project: ProjectOpt = None,
    cluster: ClusterOpt = False,
    json_output: JsonOption = False,
) -> None:
    """Print a dotfile's content (--json: its record, the content in base64)."""
    cli = use(ctx, json_output)
    found = cli.client().get(_url(path), params=_scope(ctx, project, cluster))
    if cli.json:
        cli.emit(found, lambda: None)
        return
    out = typer.get_binary_stream("stdout")
    out.write(base64.b64decode(found["data"]))
    out.flush()


@app.command("update")
def update(
    ctx: typer.Context,
    path: PathArg,
    perm: Annotated[
        str | None,
        typer.Option("--perm", metavar="MODE", help="New octal permission bits (default: kept)."),
    ] = None,
    project: ProjectOpt = None,
    cluster: ClusterOpt = False,
    file: FileOpt = None,
    json_output: JsonOption = False,
) -> None:
    """Replace a dotfile's content from stdin (or --file), its mode with --perm, or both.

    With --perm and nothing on stdin (a terminal, or empty), only the mode changes."""
    cli = use(ctx, json_output)
    where = _scope(ctx, project, cluster)
    if perm is None:
        data: bytes | None = _content(file)
    else:
        data = _given(file)
        if file is None and not data:
            data = None  # nothing on stdin: the mode alone changes
    body: dict[str, Any] = dict(where)
    if data is not None:
        body["data"] = base64.b64encode(data).decode()
    if perm is not None:
        body["mode"] = perm
    made = cli.client().put(_url(path), body)
    cli.emit(made, lambda: _said("Updated", made))


@app.command("delete")
def delete(
    ctx: typer.Context,
    path: PathArg,
    project: ProjectOpt = None,
    cluster: ClusterOpt = False,
    json_output: JsonOption = False,
) -> None:
    """Delete a dotfile (running sessions keep their copy)."""
    cli = use(ctx, json_output)
    where = _scope(ctx, project, cluster)
    with cli.client().stream("DELETE", _url(path), params=where):
        pass  # 204: nothing to read
    result = {"deleted": path, **where}
    cli.emit(result, lambda: f"Deleted dotfile {path}")
