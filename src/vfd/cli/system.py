"""``vfd status``, and the server commands ``vfd daemon`` and ``vfd mountd``.

The servers are imported inside their commands, so the CLI starts fast and every other
command works whatever state the server modules are in.
"""

from __future__ import annotations

from typing import Any

import typer

import vfd
from vfd.cli.context import JsonOption, state_of, use
from vfd.cli.output import key_values
from vfd.errors import ErrorCode, VfdError


def _mountd_text(mountd: Any) -> str:
    if not isinstance(mountd, dict) or not mountd:
        return "not answering (folders have no mount views)"
    if "mount_point" not in mountd:
        error = mountd.get("error")
        why = error.get("message") if isinstance(error, dict) else error
        return f"not answering ({why or mountd})"
    return (
        f"answering, version {mountd.get('version', '?')}, mount {mountd['mount_point']}, "
        f"{mountd.get('folders', '?')} folders, pid {mountd.get('pid', '?')}"
    )


def fast_path_text(mountd: Any) -> str | None:
    """mountd's low-level fast path: on with which libraries, or off and why (None when
    mountd does not answer or does not say)."""
    fast = mountd.get("fast_path") if isinstance(mountd, dict) else None
    if not isinstance(fast, dict):
        return None
    libs = f"libfuse {fast.get('libfuse_version')}, pyfuse3 {fast.get('pyfuse3_version')}"
    if fast.get("on"):
        return f"on ({libs}, {fast.get('libfuse')})"
    return f"off: {fast.get('reason')} ({libs})"


def sessions_text(sessions: Any) -> str | None:
    """Whether sessions run on this node: on (and the node's name), or off and how to turn
    them on (None when the daemon does not say)."""
    if not isinstance(sessions, dict):
        return None
    if sessions.get("on"):
        return f"on (node {sessions.get('node')})"
    return f"off: {sessions.get('reason')}"


def _free(amount: Any) -> str:
    return f"{amount:g}" if isinstance(amount, int | float) else "?"


def accelerator_lines(accelerators: Any) -> list[tuple[str, str]]:
    """One row per accelerator of a node: its status, then each slot's free and capacity
    (``cuda: 2 GPUs (driver 550.54); cuda.device 1 free of 2``), and one row per device."""
    if not isinstance(accelerators, dict):
        return []
    rows: list[tuple[str, str]] = []
    for name, entry in sorted(accelerators.items()):
        if not isinstance(entry, dict):
            continue
        text = str(entry.get("status") or "")
        for slot, figures in sorted((entry.get("slots") or {}).items()):
            if isinstance(figures, dict):
                text += (
                    f"; {slot} {_free(figures.get('free'))} free of "
                    f"{_free(figures.get('capacity'))}"
                )
        rows.append((name, text))
        for device in entry.get("devices") or ():
            if not isinstance(device, dict):
                continue
            memory = device.get("memory")
            size = f"{memory / 2**30:.0f} GiB" if isinstance(memory, int) else "?"
            parts = [str(device.get("name")), size, f"{device.get('sm')} SMs"]
            if device.get("numa") is not None:
                parts.append(f"NUMA {device.get('numa')}")
            if device.get("parent"):
                parts.append(f"MIG of {device.get('parent')}")
            if device.get("mig"):
                parts.append("MIG mode: its instances are offered")
            rows.append((f"  {device.get('id')}", ", ".join(parts)))
    return rows


def status(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """Show whether the daemon and mountd answer, and you; for admins also versions, hosts,
    database, whether sessions run here (and if not, why), and this node's accelerator
    devices with their free slots.

    Exits 1, saying why, when the daemon does not answer.
    """
    cli = use(ctx, json_output)
    config = cli.config()
    try:
        result = cli.client().get("/v1/status")
    except VfdError as exc:
        if exc.code is not ErrorCode.DAEMON_UNAVAILABLE:
            raise
        raise VfdError(
            exc.code,
            f"{exc.message}; start it with `vfd up` (or `systemctl start vfd`)",
            **exc.details,
        ) from None
    identity = result.get("identity") or {}
    you = f"{identity.get('email')} ({identity.get('role')}, uid {identity.get('uid')})"
    if cli.act_as:
        you += " — acting for this user"
    rows: list[tuple[str, Any]] = [
        ("daemon", f"answering, version {result.get('version')}, {config.api_socket}")
    ]
    if "mountd" in result:  # the node-wide figures: admins only
        rows += [
            ("mountd", _mountd_text(result.get("mountd"))),
            ("fast path", fast_path_text(result.get("mountd"))),
            ("sessions", sessions_text(result.get("sessions"))),
            ("database", result.get("database")),
            ("hosts", result.get("hosts")),
            *accelerator_lines(result.get("accelerators")),
        ]
    else:
        up = result.get("mountd_up")
        rows.append(("mountd", "answering" if up else _mountd_text(None)))
    rows += [
        ("you", you),
        ("client", f"vfd {vfd.__version__}, config {config.config_file or 'built-in'}"),
    ]
    cli.emit(result, lambda: key_values(cli.console, rows))


def daemon(ctx: typer.Context) -> None:
    """Run the control plane (REST API on the unix socket) in the foreground."""
    from vfd.daemon.server import serve

    serve(state_of(ctx).config())


def mountd(ctx: typer.Context) -> None:
    """Run the FUSE mount server in the foreground (owns the mount and the backing trees)."""
    from vfd.fuse.server import serve

    serve(state_of(ctx).config())


def register(app: typer.Typer) -> None:
    """Add ``status``, ``daemon`` and ``mountd`` to the root command."""
    app.command("status")(status)
    app.command("daemon")(daemon)
    app.command("mountd")(mountd)
