"""``vfd session``: list, inspect, follow, exec into and destroy sessions (compute sessions,
and the storage-only sessions of apps: ``sftp-key`` lives in :mod:`vfd.cli.sftp`).

Every command names a session as the API accepts it (``docs/sessions.md``): its full id, a
prefix of at least 4 hex digits (the 8 the tables show are enough), or the name of one of
your live sessions. Output (``logs``, ``exec``) is written as it arrives by
:mod:`vfd.cli.streams`; ``vfd session shell`` lives in :mod:`vfd.cli.shell`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from vfd.cli import sftp, shell
from vfd.cli.client import segment
from vfd.cli.context import JsonOption, use
from vfd.cli.durations import format_duration
from vfd.cli.output import cell_text, key_values, table
from vfd.cli.runflow import command_args, parse_env
from vfd.cli.sizes import format_limit, format_size
from vfd.cli.streams import FAILED, INTERRUPTED, exit_for, follow
from vfd.errors import ErrorCode, VfdError

app = typer.Typer(
    help="Compute sessions: list, inspect, follow, exec into and destroy them.",
    no_args_is_help=True,
)

EMPTY_REF = "an empty ID names no session: give its id, a prefix of 4+ hex digits, or its name"


def _ref_argument(text: str) -> str:
    """Typer ``parser=`` for ID: an empty one is a usage error (as a path it would name the
    session collection, not a session)."""
    if not text:
        raise typer.BadParameter(EMPTY_REF)
    return text


RefArg = Annotated[
    str,
    typer.Argument(
        metavar="ID",
        parser=_ref_argument,
        help="The session: its id, a prefix of 4+ hex digits, or the name of a live session.",
        show_default=False,
    ),
]


def session_path(ref: str) -> str:
    """The API path of session ``ref``."""
    if not ref:
        raise VfdError(ErrorCode.INVALID_NAME, EMPTY_REF, ref=ref)
    return f"/v1/sessions/{segment(ref)}"


def _parse_time(value: object) -> datetime | None:
    """An API time (ISO 8601, or seconds since the epoch), aware; None when it is not one."""
    try:
        if isinstance(value, int | float):
            when = datetime.fromtimestamp(value, UTC)
        else:
            when = datetime.fromisoformat(str(value))
    except (ValueError, OverflowError, OSError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def clock(value: object) -> str:
    """An API time in this machine's zone, to the second: ``2026-12-01 03:58:26 UTC``."""
    when = _parse_time(value)
    if when is None:
        return cell_text(value)
    return when.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def ago(value: object, *, now: datetime | None = None) -> str:
    """An API time (ISO 8601, or seconds since the epoch) as ``12 seconds ago``; ``-`` for
    none."""
    if value is None or value == "":
        return "-"
    when = _parse_time(value)
    if when is None:
        return str(value)
    seconds = int(((now or datetime.now(UTC)) - when).total_seconds())
    if seconds < 2:
        return "just now"
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return "just now"


def mount_text(mount: dict[str, Any]) -> str:
    """``folder -> target (rw)``, with ``auto`` for an automount folder."""
    how = str(mount.get("permission", "?"))
    if mount.get("automount"):
        how += ", auto"
    return f"{mount.get('folder')} -> {mount.get('target')} ({how})"


def _storage_text(s: dict[str, Any]) -> str:
    """What a storage session shows where a compute one shows its image: its apps."""
    if s.get("kind") != "storage":
        return ""
    names = sorted({str(a.get("name")) for a in s.get("apps") or []})
    return f"(storage: {', '.join(names) or 'no app'})"


def app_text(a: dict[str, Any]) -> str:
    """``sftp running sftp://alice@node1:30001`` (or how it ended)."""
    text = f"{a.get('name')} {a.get('status')}"
    if a.get("status") in ("starting", "running"):
        return f"{text} {a.get('endpoint') or ''}".rstrip()
    return f"{text} ({a.get('status_reason')})" if a.get("status_reason") else text


def _cpu_text(cpu: object) -> str:
    return f"{cpu:g}" if isinstance(cpu, int | float) else cell_text(cpu)


SESSION_COLUMNS = ("ID", "NAME", "STATUS", "IMAGE", "CPU", "MEM", "CREATED", "MOUNTS", "WAITS ON")
GPU_AT = SESSION_COLUMNS.index("MEM") + 1
"""Where the GPU column goes when some session asks for accelerator slots."""


def slots_text(slots: object) -> str:
    """``0.5 cuda.shares`` (several joined by ``, ``); ``-`` for none."""
    if not isinstance(slots, dict) or not slots:
        return "-"
    return ", ".join(
        f"{amount:g} {name}" if isinstance(amount, int | float) else f"{amount} {name}"
        for name, amount in sorted(slots.items())
    )


def allotment_text(held: dict[str, Any]) -> str:
    """``0.5 cuda.shares on GPU-1234`` for one ``{slot, device, amount}``."""
    amount = held.get("amount")
    shown = f"{amount:g}" if isinstance(amount, int | float) else str(amount)
    return f"{shown} {held.get('slot')} on {held.get('device')}"


def device_text(device: dict[str, Any]) -> str:
    """A device a session holds, with its use where the plugin told it."""
    held = slots_text(device.get("slots"))
    usage = dict(device.get("usage") or {})
    said = []
    if isinstance(usage.get("utilization"), int | float):
        said.append(f"{usage.pop('utilization'):g}% busy")
    if isinstance(usage.get("memory_used"), int):
        said.append(f"{format_size(usage.pop('memory_used'))} used")
    said += [f"{k} {v}" for k, v in sorted(usage.items())]
    return f"{device.get('id')} ({held}{'; ' + ', '.join(said) if said else ''})"


def session_columns(sessions: list[dict[str, Any]]) -> tuple[str, ...]:
    """The table's columns: a GPU column only when some session has accelerator slots."""
    if not any(s.get("slots") for s in sessions):
        return SESSION_COLUMNS
    return (*SESSION_COLUMNS[:GPU_AT], "GPU", *SESSION_COLUMNS[GPU_AT:])


def waits_on(s: dict[str, Any]) -> str:
    """The names of the scheduler's failing verdicts of a pending session (``fits_agent``,
    ``within_policy``, ``queue``…); empty for any other."""
    if s.get("status") != "pending":
        return ""
    return ",".join(str(v.get("name")) for v in s.get("verdicts") or [] if not v.get("ok"))


def session_rows(sessions: list[dict[str, Any]]) -> list[list[object]]:
    """Rows of the session table; MOUNTS names the folders asked for (``:ro`` when read-only),
    not the automount ones every session gets."""
    rows: list[list[object]] = []
    gpu = any(s.get("slots") for s in sessions)
    for s in sessions:
        mounts = [
            str(m.get("folder")) + (":ro" if m.get("permission") == "ro" else "")
            for m in s.get("mounts") or []
            if not m.get("automount")
        ]
        rows.append(
            [
                s.get("short_id") or str(s.get("id", ""))[:8],
                s.get("name"),
                s.get("status"),
                s.get("image") or _storage_text(s),
                "-" if s.get("kind") == "storage" else _cpu_text(s.get("cpu")),
                "-" if s.get("kind") == "storage" else format_limit(s.get("memory")),
                ago(s.get("created_at")),
                mounts,
                waits_on(s),
            ]
        )
        if gpu:
            rows[-1].insert(GPU_AT, slots_text(s.get("slots")))
    return rows


@app.command("list")
def list_(
    ctx: typer.Context,
    all_: Annotated[
        bool,
        typer.Option(
            "--all", "-a", help="Also list ended sessions (terminated, cancelled, error)."
        ),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """List your sessions, newest first: the live ones, or all with --all."""
    cli = use(ctx, json_output)
    result = cli.client().get("/v1/sessions", params={"all": str(all_).lower()})
    empty = "no sessions" if all_ else "no live sessions (--all lists ended ones)"
    cli.emit(
        result,
        lambda: table(
            cli.console,
            session_columns(result.get("sessions", [])),
            session_rows(result.get("sessions", [])),
            empty=empty,
        ),
    )


def _ending(s: dict[str, Any]) -> str | None:
    """The line that says why a session was cancelled or failed (who and why), if it was."""
    if s.get("status") not in ("cancelled", "error"):
        return None
    reason = s.get("status_reason") or "no reason recorded"
    plugin = s.get("status_plugin")
    by = f" by plugin {plugin}" if plugin else ""
    return f"{s.get('status')}{by}: {reason}"


def info_pairs(s: dict[str, Any]) -> list[tuple[str, object]]:
    """The ``key  value`` lines of ``vfd session info``."""
    status = str(s.get("status"))
    if s.get("status_reason") and _ending(s) is None:
        status += f" ({s['status_reason']})"
    pairs: list[tuple[str, object]] = [
        ("id", s.get("id")),
        ("name", s.get("name")),
        ("user", s.get("user")),
        ("status", _ending(s) or status),
    ]
    if s.get("verdict"):
        pairs.append(("waiting", s.get("verdict")))
    if s.get("status") == "pending":  # each of the scheduler's verdicts, failing ones first
        verdicts = sorted(s.get("verdicts") or [], key=lambda v: bool(v.get("ok")))
        pairs += [
            (f"  {v.get('name')}", f"{'ok' if v.get('ok') else 'no'}: {v.get('reason')}")
            for v in verdicts
        ]
    command = s.get("command") or []
    if s.get("kind") == "storage":
        pairs.append(("kind", "storage (no container)"))
    else:
        pairs += [
            ("image", s.get("image")),
            ("command", " ".join(command) if command else "(the image's default)"),
        ]
    pairs += [
        ("cpu", _cpu_text(s.get("cpu"))),
        ("memory", format_limit(s.get("memory"))),
    ]
    if s.get("slots"):
        pairs.append(("slots", slots_text(s.get("slots"))))
        held = s.get("allocation") or []
        pairs += [("allocation", allotment_text(a)) for a in held] or [
            ("allocation", "none yet (held once the scheduler places it)")
        ]
        pairs += [("device", device_text(d)) for d in s.get("devices") or [] if d.get("usage")]
    pairs += [
        ("node", s.get("node")),
        ("group", s.get("group")),
        ("lifetime", format_duration(s.get("lifetime"), zero="no limit")),
        ("created", _when(s.get("created_at"))),
        ("started", _when(s.get("started_at"))),
        ("ended", _when(s.get("terminated_at"))),
        ("exit code", s.get("exit_code")),
        ("container", str(s.get("container_id") or "")[:12]),
        ("auto remove", s.get("auto_remove")),
    ]
    env = s.get("env") or {}
    pairs += [("env", f"{k}={v}") for k, v in sorted(env.items())]
    mounts = s.get("mounts") or []
    pairs += [("mount", mount_text(m)) for m in mounts] or [("mounts", "none")]
    pairs += [("app", app_text(a)) for a in s.get("apps") or []]
    return pairs


def _when(value: object) -> str:
    return "-" if not value else f"{clock(value)} ({ago(value)})"


def history_rows(events: list[dict[str, Any]]) -> list[list[object]]:
    return [[clock(e.get("at")), e.get("status"), e.get("reason"), e.get("plugin")] for e in events]


@app.command("info")
def info(ctx: typer.Context, ref: RefArg, json_output: JsonOption = False) -> None:
    """Show one session: its status and why, resources, mounts, command and status history.

    The history lists every status change with its time, reason and plugin.
    """
    cli = use(ctx, json_output)
    s = cli.client().get(session_path(ref))

    def human() -> None:
        ending = _ending(s)
        if ending is not None:
            cli.console.print(f"{s.get('short_id')} {ending}", style="bold red", markup=False)
        key_values(cli.console, info_pairs(s))
        cli.console.print()
        table(
            cli.console,
            ("AT", "STATUS", "REASON", "PLUGIN"),
            history_rows(s.get("events") or []),
            title="history",
            empty="no status history",
        )

    cli.emit(s, human)


@app.command("logs")
def logs(
    ctx: typer.Context,
    ref: RefArg,
    follow_: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Keep writing new output until the session ends."),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Write a session's output: its stdout to stdout, its stderr to stderr.

    With --json: one object (stdout, stderr, and the session's status, exit_code, reason).
    """
    cli = use(ctx, json_output)
    params = {"follow": str(follow_).lower()}
    try:
        out = follow(cli.client(), "GET", f"{session_path(ref)}/logs", keep=cli.json, params=params)
    except KeyboardInterrupt:
        raise typer.Exit(INTERRUPTED) from None
    if cli.json:
        cli.emit({**out.as_json(), **out.end}, lambda: None)


EnvOption = Annotated[
    list[str] | None,
    typer.Option(
        "--env",
        "-e",
        metavar="K=V",
        help="Set an environment variable (repeatable); a bare K passes K's value from here.",
        show_default=False,
    ),
]


@app.command("exec", context_settings={"allow_interspersed_args": False})
def exec_(
    ctx: typer.Context,
    ref: RefArg,
    command: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="-- CMD...",
            help="The command and its arguments (everything after ID, options included).",
            show_default=False,
        ),
    ] = None,
    env: EnvOption = None,
    workdir: Annotated[
        str | None,
        typer.Option("--workdir", "-w", metavar="DIR", help="Run in DIR (default: /home/work)."),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Run a command in a running session as its user; exit with the command's exit code.

    Options go before ID; the command's output is written as it comes.
    With --json: one object (stdout, stderr, exit_code) at the end.
    Exit 125: vfd failed (no such session, or it does not run).
    """
    cli = use(ctx, json_output)
    argv = command_args(command)
    if not argv:
        raise typer.BadParameter("give the command to run after ID", param_hint="CMD")
    body: dict[str, Any] = {"command": argv, "env": parse_env(env)}
    if workdir is not None:
        body["workdir"] = workdir
    try:
        out = follow(cli.client(), "POST", f"{session_path(ref)}/exec", keep=cli.json, body=body)
    except VfdError as exc:
        raise exit_for(cli, exc) from None
    except KeyboardInterrupt:
        raise typer.Exit(INTERRUPTED) from None
    code = out.end.get("exit_code")
    if cli.json:
        cli.emit({**out.as_json(), "exit_code": code}, lambda: None)
    if isinstance(code, int):
        raise typer.Exit(code)
    if cli.json:  # the object printed says it
        raise typer.Exit(FAILED)
    raise exit_for(
        cli, VfdError(ErrorCode.INTERNAL, f"the command ended without an exit code: {out.end}")
    )


@app.command("destroy")
def destroy(
    ctx: typer.Context,
    ref: RefArg,
    force: Annotated[
        bool,
        typer.Option(
            "--force", "-f", help="Kill the container at once (SIGKILL) instead of SIGTERM first."
        ),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Destroy a session: cancel it while it waits, stop it while it runs; print its status.

    A running container gets SIGTERM, then SIGKILL after the stop timeout (--force: at once).
    An ended session's kept container (run without --rm) is removed.
    """
    cli = use(ctx, json_output)
    s = cli.client().request("DELETE", session_path(ref), params={"force": str(force).lower()})
    cli.emit(s, lambda: f"Session {s.get('short_id')} ({s.get('name')}) is {s.get('status')}")


app.command("shell")(shell.shell)
app.command("sftp-key")(sftp.sftp_key)
from vfd.cli import apps as _apps  # noqa: E402, F401  (vfd session apps, vfd session app)
