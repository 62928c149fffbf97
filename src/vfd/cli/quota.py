"""``vfd admin quota list|show|set|rescan``: quota scopes' limits and usage."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from vfd.cli.context import JsonOption, use
from vfd.cli.files import scope_pairs
from vfd.cli.output import key_values, print_warning, short_id, table
from vfd.cli.sizes import format_limit, format_size, size_option
from vfd.errors import ErrorCode, VfdError

app = typer.Typer(help="Quota scopes: byte and file limits per user or project on a host.")

ScopeArg = Annotated[
    str | None,
    typer.Argument(
        help="user:<uuid> or project:<uuid> (or use --user / --project).", show_default=False
    ),
]
UserOpt = Annotated[str | None, typer.Option("--user", metavar="EMAIL", help="A user's scope.")]
ProjectOpt = Annotated[
    str | None, typer.Option("--project", metavar="NAME", help="A project's scope.")
]
HostOpt = Annotated[
    str | None, typer.Option("--host", help="Storage host (default: the configured default).")
]


def _which(
    scope: str | None, user: str | None, project: str | None, host: str | None
) -> dict[str, str]:
    given = [x for x in (scope, user, project) if x]
    if len(given) != 1:
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT,
            "name exactly one scope: SCOPE, --user EMAIL or --project NAME",
        )
    out = {"scope": scope, "user": user, "project": project, "host": host}
    return {k: v for k, v in out.items() if v}


@app.command("list")
def list_(ctx: typer.Context, host: HostOpt = None, json_output: JsonOption = False) -> None:
    """List every quota scope: host, scope, owner, limits and use (all hosts by default)."""
    cli = use(ctx, json_output)
    result = cli.client().get("/v1/admin/quotas", params={"host": host} if host else None)
    rows = [
        [
            s["host"],
            f"{s['scope'].partition(':')[0]}:{short_id(s['scope'].partition(':')[2])}",
            s.get("owner"),
            format_size(s["used_bytes"]),
            format_limit(s["max_bytes"]),
            s["used_files"],
            s["max_files"] or "unlimited",
            ", ".join(s.get("over_limit", [])) or "-",
            "yes" if s.get("live") else "no",
        ]
        for s in result["scopes"]
    ]
    columns = ("host", "scope", "owner", "used", "limit", "files", "file limit", "over", "live")
    cli.emit(result, lambda: table(cli.console, columns, rows, empty="no quota scopes"))


def warn_over_limit(scope: dict[str, Any]) -> None:
    """One warning line per limit the scope's use is already above (the limit is set all the
    same: nothing is deleted, but writes that need more fail until use drops below it)."""
    where = f"{scope['scope']} on {scope['host']}"
    over = scope.get("over_limit", [])
    if "bytes" in over:
        print_warning(
            f"{where} already uses {format_size(scope['used_bytes'])}, above its byte limit "
            f"{format_size(scope['max_bytes'])}: writes that add data fail (EDQUOT) until its "
            "use is back under the limit"
        )
    if "files" in over:
        print_warning(
            f"{where} already has {scope['used_files']} files, above its file limit "
            f"{scope['max_files']}: creating files fails (EDQUOT) until there are fewer"
        )


@app.command("show")
def show(
    ctx: typer.Context,
    scope: ScopeArg = None,
    user: UserOpt = None,
    project: ProjectOpt = None,
    host: HostOpt = None,
    json_output: JsonOption = False,
) -> None:
    """Show a scope's limits and usage."""
    cli = use(ctx, json_output)
    result = cli.client().get("/v1/admin/quota", params=_which(scope, user, project, host))
    cli.emit(result, lambda: key_values(cli.console, scope_pairs(result)))


@app.command("set")
def set_(
    ctx: typer.Context,
    scope: ScopeArg = None,
    user: UserOpt = None,
    project: ProjectOpt = None,
    host: HostOpt = None,
    max_bytes: Annotated[
        int | None,
        typer.Option(
            "--bytes",
            parser=size_option,
            metavar="SIZE",
            help="Byte limit (10G, 512M, …); 0 = unlimited.",
        ),
    ] = None,
    max_files: Annotated[
        int | None, typer.Option("--files", min=0, help="File (inode) limit; 0 = unlimited.")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Set a scope's limits; they apply at once on the mount."""
    cli = use(ctx, json_output)
    if max_bytes is None and max_files is None:
        raise VfdError(ErrorCode.INVALID_ARGUMENT, "give --bytes and/or --files")
    body: dict[str, Any] = dict(_which(scope, user, project, host))
    if max_bytes is not None:
        body["max_bytes"] = max_bytes
    if max_files is not None:
        body["max_files"] = max_files
    result = cli.client().put("/v1/admin/quota", body)
    if not cli.json:
        warn_over_limit(result)
    cli.emit(result, lambda: key_values(cli.console, scope_pairs(result)))


@app.command("rescan")
def rescan(
    ctx: typer.Context,
    scope: ScopeArg = None,
    user: UserOpt = None,
    project: ProjectOpt = None,
    host: HostOpt = None,
    json_output: JsonOption = False,
) -> None:
    """Recount usage on disk and fix drift (all scopes, one host's, or one scope)."""
    cli = use(ctx, json_output)
    body: dict[str, Any] = {"host": host} if host else {}
    if scope or user or project:
        body = dict(_which(scope, user, project, host))
    result = cli.client().post("/v1/admin/quota/rescan", body)

    def human() -> str:
        rows = []
        for s in result["scopes"]:
            b, a = s["before"], s["after"]
            if b != a:
                rows.append(
                    [
                        s["host"],
                        s["scope"],
                        f"{format_size(b['bytes'])} -> {format_size(a['bytes'])}",
                        f"{b['files']} -> {a['files']}",
                    ]
                )
        table(cli.console, ["host", "scope", "bytes", "files"], rows, empty="no drift")
        return f"Rescanned {len(result['scopes'])} scope(s); fixed drift in {result['drifted']}."

    cli.emit(result, human)
