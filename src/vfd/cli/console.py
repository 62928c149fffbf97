"""``vfd console``: a one-time link that signs a browser in to the web console.

The daemon makes the link for the user the CLI runs as (``POST /v1/console/links`` on the
unix socket); it works once, within minutes (docs/console.md "Signing in").
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from vfd.cli.context import JsonOption, use
from vfd.errors import ErrorCode, VfdError


def _with_host(url: str, path: str, host: str) -> str:
    """``url`` with its host (and its port, when ``host`` names one) replaced by ``host``."""
    scheme, _, rest = url.partition("://")
    port = rest[: len(rest) - len(path)].rpartition(":")[2]
    if host.startswith("["):  # [v6] or [v6]:port
        target = host if "]:" in host else f"{host}:{port}"
    elif host.count(":") == 1:
        target = host
    elif ":" in host:  # a bare IPv6 address
        target = f"[{host}]:{port}"
    else:
        target = f"{host}:{port}"
    return f"{scheme}://{target}{path}"


def console(
    ctx: typer.Context,
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            metavar="HOST[:PORT]",
            help="The host name (and port) the browser reaches this node by, in place of the "
            "one the daemon knows.",
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Print a link that signs a browser in to the web console as you (once, within minutes).

    The console is served on the daemon's TCP listener (tcp_listen); the link works once,
    within five minutes, and signs in for twelve hours (or until you sign out).
    """
    cli = use(ctx, json_output)
    if host is not None and (not host.strip() or "/" in host or "@" in host):
        raise VfdError(ErrorCode.USAGE_ERROR, f"--host: {host!r} is not HOST or HOST:PORT")
    link: dict[str, Any] = cli.client().post("/v1/console/links", {})
    if host is not None:
        link["url"] = _with_host(str(link["url"]), str(link["path"]), host.strip())
    minutes = max(1, int(link.get("expires_in", 300)) // 60)
    cli.emit(
        link,
        lambda: (
            f"Open this link in a browser to sign in to the vfd console as {link['user']}\n"
            f"(it works once, within {minutes} minutes):\n{link['url']}"
        ),
    )


def register(app: typer.Typer) -> None:
    """Add ``vfd console`` to the root command."""
    app.command("console")(console)
