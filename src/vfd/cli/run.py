"""``vfd run``: start a compute session and, unless detached, follow it as ``docker run`` does.

Without ``-d`` the container's stdout and stderr are written to ours as they come, and the
command exits with the container's exit code, so ``vfd run IMAGE CMD`` can stand where the
command would. vfd's own failures exit 125 (the request refused, or the session ended
``cancelled``/``error``: ``error: session <id> <status>: <reason> [<plugin>]``). The first
Ctrl-C destroys the session and waits until it stopped (exit 130); a second kills it at once;
a third stops waiting.
"""

from __future__ import annotations

import math
import signal
import sys
import time
from typing import Annotated, Any

import typer

from vfd.cli.client import VfdClient
from vfd.cli.context import CliState, JsonOption, use
from vfd.cli.durations import duration_option
from vfd.cli.output import print_error
from vfd.cli.session import EnvOption, command_args, parse_env
from vfd.cli.sizes import size_option
from vfd.cli.streams import FAILED, INTERRUPTED, exit_for, follow
from vfd.errors import VfdError
from vfd.sessions.lifecycle import FINAL

POLL = 0.2
TERMINATED = 128 + signal.SIGTERM
"""The exit status of ``vfd run`` ended by SIGTERM (the session destroyed first)."""


def _cpu_option(text: str) -> float:
    """Typer ``parser=`` for ``--cpu``: a finite number (``nan`` and ``inf`` are usage errors;
    the daemon judges the range)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise typer.BadParameter(f"{text!r} is not a number of cpus, e.g. 1, 0.5 or 4")
    return value


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
            parser=_cpu_option,
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
            help="A session preset giving cpu and memory (`vfd admin preset list`); --cpu and "
            "--mem override it.",
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
    body: dict[str, Any] = {
        "image": image,
        "command": command_args(command),
        "mounts": list(mount or []),
        "env": parse_env(env),
        "auto_remove": remove,
    }
    if name is not None:
        body["name"] = name
    if cpu is not None:
        body["cpu"] = cpu
    if memory is not None:
        body["memory"] = memory
    for key, value in (("group", group), ("preset", preset), ("lifetime", lifetime)):
        if value is not None:
            body[key] = value
    try:
        created = cli.client().post("/v1/sessions", body)
    except VfdError as exc:
        raise exit_for(cli, exc) from None
    except KeyboardInterrupt:
        sys.stderr.write("vfd: interrupted; the session may have been made (vfd session list)\n")
        raise typer.Exit(INTERRUPTED) from None
    if detach:
        cli.emit(created, lambda: f"{created.get('short_id')} {created.get('name')}")
        return
    raise typer.Exit(_follow(cli, created))


class _Terminated(KeyboardInterrupt):
    """SIGTERM while following (``timeout``, ``kill``, a service manager): handled as Ctrl-C."""


def _on_sigterm(signum: int, frame: object) -> None:
    # once: `timeout` signals the command and then its whole process group, and a second
    # interruption inside the DELETE request would break it off half sent
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise _Terminated


def _follow(cli: CliState, created: dict[str, Any]) -> int:
    """Write the session's output until it ends; the exit status of ``vfd run``.

    SIGTERM is taken as Ctrl-C (the session is destroyed, not left running without anyone
    following it, as ``docker run`` passes the signal on), and exits 143.
    """
    client = cli.client()
    path = f"/v1/sessions/{created['id']}"
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        out = follow(client, "GET", f"{path}/logs", keep=cli.json, params={"follow": "true"})
    except KeyboardInterrupt as exc:
        ended = _interrupted(client, path, str(created.get("short_id")))
        return TERMINATED if isinstance(exc, _Terminated) and ended == INTERRUPTED else ended
    except VfdError as exc:
        raise exit_for(cli, exc) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    status, code = out.end.get("status"), out.end.get("exit_code")
    if status != "terminated" or not isinstance(code, int):
        code = None
    if cli.json:
        try:
            final = client.get(path)
        except VfdError as exc:
            raise exit_for(cli, exc) from None
        cli.emit({"session": final, **out.as_json(), "exit_code": code}, lambda: None)
    elif code is None:
        _say_failed(client, path, created, out.end)
    return FAILED if code is None else code


def _say_failed(client: VfdClient, path: str, created: dict[str, Any], end: dict[str, Any]) -> None:
    """``error: session <short> <status>: <reason> [<plugin>]`` on stderr."""
    status, reason = end.get("status"), end.get("reason")
    plugin = None
    try:
        final = client.get(path)
        plugin = final.get("status_plugin")
        reason = reason or final.get("status_reason")
    except VfdError:
        pass  # the END frame said enough
    if status == "terminated":
        reason = reason or "the container ended without an exit code"
    line = f"error: session {created.get('short_id')} {status}: {reason or 'no reason recorded'}"
    sys.stderr.write(line + (f" [{plugin}]" if plugin else "") + "\n")
    sys.stderr.flush()


def _interrupted(client: VfdClient, path: str, short: str) -> int:
    """Ctrl-C while following: destroy the session and wait until it ended (a second Ctrl-C
    kills it at once, a third stops waiting)."""
    force = False
    sys.stderr.write(f"vfd: destroying session {short} (Ctrl-C again to kill it at once)\n")
    sys.stderr.flush()
    while True:
        try:
            _destroy_and_wait(client, path, force)
            return INTERRUPTED
        except KeyboardInterrupt:
            if force:
                sys.stderr.write(f"vfd: not waiting; session {short} goes on ending\n")
                return INTERRUPTED
            force = True
            sys.stderr.write(f"vfd: killing session {short}\n")
            sys.stderr.flush()
        except VfdError as exc:
            print_error(exc, as_json=False)
            return FAILED


def _destroy_and_wait(client: VfdClient, path: str, force: bool) -> None:
    s = client.request("DELETE", path, params={"force": str(force).lower()})
    while s.get("status") not in FINAL:
        time.sleep(POLL)
        s = client.get(path)


def register(app: typer.Typer) -> None:
    """Add ``run`` to the root command (options before IMAGE; the rest is the command)."""
    app.command(
        "run",
        context_settings={"allow_interspersed_args": False},
    )(run)
