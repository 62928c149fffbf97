"""``vfd plugins``: what the daemon's plugin manager loaded, left out and blocked."""

from __future__ import annotations

from typing import Any

import typer

from vfd.cli.context import JsonOption, use
from vfd.cli.output import table


def _origin(plugin: dict[str, Any]) -> str:
    dist = plugin.get("distribution")
    if not dist:
        return "-"
    text = f"{dist} {plugin.get('version') or ''}".strip()
    return f"{text} (built in)" if plugin.get("builtin") else text


def _state(plugin: dict[str, Any]) -> str:
    if plugin.get("error"):
        return "FAILED"
    failed = plugin.get("calls_failed") or 0
    return f"loaded, {failed} calls failed" if failed else "loaded"


def _problems(plugins: list[dict[str, Any]]) -> list[str]:
    """One line per plugin left out (why) or whose notifications failed (the latest)."""
    lines = []
    for p in plugins:
        if p.get("error"):
            lines.append(f"{p['name']}: left out: {p['error']}")
        elif p.get("last_failure"):
            last = p["last_failure"]
            when, error = last.get("at"), last.get("error")
            lines.append(f"{p['name']}: {last.get('hook')} failed at {when}: {error}")
    return lines


def plugins(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """List the daemon's plugins: distribution and version, built in or not, the hooks each
    implements, and why one failed to load; then the schedulers, apps and accelerators they
    register (each accelerator with its slots and what it found on this node: its devices,
    or why there are none) and the plugins blocked by the config ([plugins] block).

    A plugin that failed is left out and the daemon goes on serving: its error is shown here
    and in the daemon's log.
    """
    cli = use(ctx, json_output)
    result = cli.client().get("/v1/plugins")

    def human() -> None:
        rows = [
            (p["name"], _origin(p), ", ".join(p.get("hooks") or ()) or "-", _state(p))
            for p in result.get("plugins") or ()
        ]
        table(cli.console, ("PLUGIN", "DISTRIBUTION", "HOOKS", "STATE"), rows, empty="no plugins")
        schedulers = result.get("schedulers") or ()
        if schedulers:
            cli.console.print()
            table(
                cli.console,
                ("SCHEDULER", "PLUGIN", "DESCRIPTION"),
                [(s["name"], s["plugin"], s.get("description")) for s in schedulers],
            )
        apps = result.get("apps") or ()
        if apps:
            cli.console.print()
            table(
                cli.console,
                ("APP", "PLUGIN", "DESCRIPTION"),
                [(a["name"], a["plugin"], a.get("description")) for a in apps],
            )
        accelerators = result.get("accelerators") or ()
        if accelerators:
            cli.console.print()
            table(
                cli.console,
                ("ACCELERATOR", "PLUGIN", "SLOTS", "DEVICES"),
                [
                    (
                        a["name"],
                        a["plugin"],
                        ", ".join(s["name"] for s in a.get("slots") or ()),
                        a.get("status"),
                    )
                    for a in accelerators
                ],
            )
        blocked = result.get("blocked") or ()
        if blocked:
            cli.console.print()
            cli.console.print(
                "blocked ([plugins] block, not imported): " + ", ".join(blocked), markup=False
            )
        problems = _problems(list(result.get("plugins") or ()))
        if problems:
            cli.console.print()
            for line in problems:
                cli.console.print(line, markup=False, soft_wrap=True)

    cli.emit(result, human)


def register(app: typer.Typer) -> None:
    """Add ``plugins`` to the root command."""
    app.command("plugins")(plugins)
