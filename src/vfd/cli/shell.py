"""``vfd session shell``: an interactive terminal in a running session, over a WebSocket.

The daemon runs a shell on a TTY in the session's container (``GET /v1/sessions/{ref}/shell``,
``docs/api.md``). Binary messages carry the TTY's bytes both ways; this end sends a text
message ``{"resize": [cols, rows]}`` at the start and on every SIGWINCH; the daemon closes
with code 1000 and the reason ``{"exit_code": N}`` when the shell exits, and this command
exits with N.

The local terminal is put in raw mode (Ctrl-C, Ctrl-D and Ctrl-Z go to the shell, not to this
process) and restored on every way out: the shell's end, an error, a lost daemon.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import sys
import termios
import threading
import tty
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vfd.cli.client import ACT_AS_HEADER
from vfd.cli.context import use
from vfd.errors import ErrorCode, VfdError

if TYPE_CHECKING:
    from websockets.sync.client import ClientConnection

OPEN_TIMEOUT = 30.0


def shell(
    ctx: typer.Context,
    ref: Annotated[
        str,
        typer.Argument(
            metavar="ID",
            help="The session: its id, a prefix of 4+ hex digits, or the name of a live session.",
            show_default=False,
        ),
    ],
) -> None:
    """Open an interactive shell in a running session; exit with the shell's exit code.

    Needs a terminal; Ctrl-C, Ctrl-D and Ctrl-Z go to the shell.
    Exit 125: vfd failed (no such session, it does not run, the daemon went away).
    """
    from vfd.cli.session import session_path
    from vfd.cli.streams import FAILED, exit_for

    cli = use(ctx, False)
    try:
        if not _is_terminal(sys.stdin):
            raise VfdError(
                ErrorCode.INVALID_ARGUMENT,
                "vfd session shell needs a terminal, and stdin is not one "
                "(run a command with `vfd session exec ID -- CMD...`)",
            )
        # the ordinary client resolves the reference and words a missing daemon or session
        found = cli.client().get(session_path(ref))
        if found.get("status") != "running":
            raise VfdError(
                ErrorCode.SESSION_NOT_RUNNING,
                f"session {found.get('short_id')} ({found.get('name')}) is "
                f"{found.get('status')}, not running",
                status=found.get("status"),
            )
        code = interact(
            cli.config().api_socket, f"{session_path(str(found['id']))}/shell", cli.act_as
        )
    except VfdError as exc:
        raise exit_for(cli, exc) from None
    raise typer.Exit(code if code is not None else FAILED)


def _is_terminal(stream: Any) -> bool:
    try:
        return os.isatty(stream.fileno())
    except (OSError, ValueError):  # no file descriptor at all
        return False


def _connect(socket: Path, path: str, act_as: str | None) -> Any:
    """The opening of the WebSocket (a context manager), refusals mapped to ``VfdError``."""
    from websockets.sync.client import unix_connect

    headers = {ACT_AS_HEADER: act_as} if act_as else {}
    return unix_connect(
        str(socket),
        f"ws://vfd{path}",
        additional_headers=headers,
        open_timeout=OPEN_TIMEOUT,
        compression=None,
        max_size=None,
    )


def _refused(exc: Exception, socket: Path) -> VfdError:
    """The ``VfdError`` for a WebSocket that could not be opened."""
    from websockets.exceptions import InvalidStatus

    if isinstance(exc, InvalidStatus):
        response = exc.response
        try:
            body = json.loads(response.body or b"")
        except ValueError:
            body = None
        error = VfdError.from_json(body) or _close_error(body)
        if error is not None:
            return error
        return VfdError(
            ErrorCode.INTERNAL, f"daemon refused the shell with HTTP {response.status_code}"
        )
    if isinstance(exc, OSError):
        why = (exc.strerror or str(exc)).lower()
        return VfdError(
            ErrorCode.DAEMON_UNAVAILABLE,
            f"vfd daemon is not running (socket {socket}: {why})",
            socket=str(socket),
        )
    return VfdError(ErrorCode.DAEMON_UNAVAILABLE, f"cannot open the shell (socket {socket}): {exc}")


def interact(socket: Path, path: str, act_as: str | None) -> int | None:
    """Run the shell at ``path`` on this terminal until it exits; its exit code."""
    from websockets.exceptions import InvalidHandshake

    try:
        opening = _connect(socket, path, act_as)
        ws = opening.__enter__()
    except (InvalidHandshake, OSError, TimeoutError) as exc:
        raise _refused(exc, socket) from None
    try:
        return _session(ws)
    finally:
        opening.__exit__(None, None, None)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _size() -> list[int]:
    size = shutil.get_terminal_size()
    return [size.columns, size.lines]


def _session(ws: ClientConnection) -> int | None:
    """Pump bytes between this terminal and ``ws`` until the server closes."""
    from websockets.exceptions import ConnectionClosed

    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    wake_r, wake_w = os.pipe()
    closed: list[BaseException] = []

    def receive() -> None:
        try:
            for message in ws:
                data = message.encode() if isinstance(message, str) else message
                _write_all(stdout, data)
        except ConnectionClosed as exc:
            closed.append(exc)
        except BaseException as exc:  # handed to the main thread
            closed.append(exc)
        finally:
            with contextlib.suppress(OSError):  # the main thread gave up and closed it
                os.write(wake_w, b"x")

    def on_winch(signum: int, frame: object) -> None:
        os.write(wake_w, b"w")

    saved = termios.tcgetattr(stdin)
    old_winch = signal.signal(signal.SIGWINCH, on_winch)
    receiver = threading.Thread(target=receive, name="vfd-shell-recv", daemon=True)
    try:
        tty.setraw(stdin)
        ws.send(json.dumps({"resize": _size()}))
        receiver.start()
        reading = True
        while True:
            ready, _, _ = select.select([stdin, wake_r] if reading else [wake_r], [], [])
            if wake_r in ready:
                woken = os.read(wake_r, 64)
                if b"x" in woken:
                    break  # the receiver ended: the server closed
                if b"w" in woken:
                    ws.send(json.dumps({"resize": _size()}))
                continue
            data = os.read(stdin, 65536)
            if not data:
                reading = False  # stdin ended: the shell ends when the server says so
                continue
            try:
                ws.send(data)
            except ConnectionClosed:
                break
        receiver.join(timeout=5)
    finally:
        termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        signal.signal(signal.SIGWINCH, old_winch)
        os.close(wake_r)
        os.close(wake_w)
    if not closed and ws.close_code is None:
        raise VfdError(ErrorCode.DAEMON_UNAVAILABLE, "the shell's connection did not close")
    return _exit_code(closed[0] if closed else None, ws)


def _exit_code(ended: BaseException | None, ws: ClientConnection) -> int | None:
    """The shell's exit code from the close frame (``{"exit_code": N}``, code 1000), or the
    ``VfdError`` the close or the failure says."""
    from websockets.exceptions import ConnectionClosed

    if ended is not None and not isinstance(ended, ConnectionClosed):
        raise VfdError(ErrorCode.DAEMON_UNAVAILABLE, f"lost the shell: {ended}")
    code, reason = ws.close_code, ws.close_reason or ""
    try:
        said = json.loads(reason) if reason else None
    except ValueError:
        said = None
    error = VfdError.from_json(said) or _close_error(said)
    if error is not None:
        raise error
    if code == 1000 and isinstance(said, dict) and isinstance(said.get("exit_code"), int):
        return int(said["exit_code"])
    raise VfdError(
        ErrorCode.DAEMON_UNAVAILABLE,
        f"the shell's connection closed without an exit code (code {code}: {reason or '-'})",
    )


def _close_error(said: Any) -> VfdError | None:
    """The error a refusal's close reason names (``{"code", "message"}``, docs/api.md)."""
    if isinstance(said, dict) and isinstance(said.get("code"), str) and "message" in said:
        return VfdError(ErrorCode.from_wire(said["code"]), str(said["message"]))
    return None
