"""What ``vfd run`` does once its arguments are known: the request, then ``-d``'s line or the
session's output followed to its end, and the exit status.

Shared by the typer command (:mod:`vfd.cli.run`) and the console script's fast path
(:mod:`vfd.cli.quickrun`), so the two cannot differ. Imports neither typer, click, rich nor
pydantic: the value parsers below import typer only to refuse a value (a usage error).

Exit statuses: the container's exit code; 125 when vfd failed (the request refused, or the
session ended ``cancelled``/``error``: ``error: session <id> <status>: <reason> [<plugin>]``);
130 after Ctrl-C, 143 after SIGTERM (either destroys the session and waits until it stopped;
a second Ctrl-C kills it at once; a third stops waiting).
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from typing import Any

from vfd.cli.client import VfdClient
from vfd.cli.output import print_error
from vfd.cli.state import CliState
from vfd.cli.streams import FAILED, INTERRUPTED, follow
from vfd.errors import VfdError
from vfd.sessions.lifecycle import FINAL

POLL = 0.2
TERMINATED = 128 + signal.SIGTERM
"""The exit status of ``vfd run`` ended by SIGTERM (the session destroyed first)."""


def cpu_option(text: str) -> float:
    """Typer ``parser=`` for ``--cpu``: a finite number (``nan`` and ``inf`` are usage errors;
    the daemon judges the range)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        import typer

        raise typer.BadParameter(f"{text!r} is not a number of cpus, e.g. 1, 0.5 or 4")
    return value


def amount_option(text: str) -> float:
    """Typer ``parser=`` for ``--gpu``/``--fgpu``: a finite number (the daemon judges the
    range and the step)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        import typer

        raise typer.BadParameter(f"{text!r} is not a number, e.g. 1, 2 or 0.5")
    return value


GPU_SLOT = "cuda.device"
FGPU_SLOT = "cuda.shares"


def parse_slots(
    values: list[str] | None, *, gpu: float | None = None, fgpu: float | None = None
) -> dict[str, float]:
    """``--slot NAME=AMOUNT`` options, ``--gpu N`` and ``--fgpu F`` as the request's
    ``slots`` (a slot given twice: ``typer.BadParameter``)."""
    slots: dict[str, float] = {}

    def put(name: str, amount: float, hint: str) -> None:
        if name in slots:
            import typer

            raise typer.BadParameter(f"{name} is given twice", param_hint=hint)
        slots[name] = amount

    for item in values or []:
        name, sep, text = item.partition("=")
        try:
            amount = float(text) if sep and name else math.nan
        except ValueError:
            amount = math.nan
        if not math.isfinite(amount):
            import typer

            raise typer.BadParameter(
                f"{item!r} is not NAME=AMOUNT (e.g. cuda.shares=0.5)", param_hint="'--slot'"
            )
        put(name, amount, "'--slot'")
    if gpu is not None:
        put(GPU_SLOT, gpu, "'--gpu'")
    if fgpu is not None:
        put(FGPU_SLOT, fgpu, "'--fgpu'")
    return slots


def parse_env(values: list[str] | None) -> dict[str, str]:
    """``-e K=V`` options as a dict; ``-e K`` takes K's value from this environment."""
    env: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not key:
            import typer

            raise typer.BadParameter(f"{item!r} is not K=V", param_hint="'-e' / '--env'")
        if not sep:
            if key not in os.environ:
                import typer

                raise typer.BadParameter(
                    f"{key} is not set here; give a value with {key}=VALUE",
                    param_hint="'-e' / '--env'",
                )
            value = os.environ[key]
        env[key] = value
    return env


def command_args(args: list[str] | None) -> list[str]:
    """The command after the session or image (a first ``--`` only separates it)."""
    args = list(args or [])
    return args[1:] if args[:1] == ["--"] else args


def request_body(
    image: str,
    command: list[str] | None,
    *,
    mount: list[str] | None = None,
    cpu: float | None = None,
    memory: int | None = None,
    group: str | None = None,
    preset: str | None = None,
    lifetime: float | None = None,
    name: str | None = None,
    env: list[str] | None = None,
    remove: bool = False,
    gpu: float | None = None,
    fgpu: float | None = None,
    slot: list[str] | None = None,
) -> dict[str, Any]:
    """The ``POST /v1/sessions`` body (``-e`` or ``--slot`` entries it cannot take:
    ``typer.BadParameter``)."""
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
    slots = parse_slots(slot, gpu=gpu, fgpu=fgpu)
    if slots:
        body["slots"] = slots
    return body


def failed(cli: CliState, error: VfdError) -> int:
    """Print ``error`` as every error is printed; the status that says vfd failed (125)."""
    print_error(error, as_json=cli.json)
    return FAILED


def start(cli: CliState, body: dict[str, Any], *, detach: bool) -> int:
    """Make the session; with ``detach`` print it and return, else follow it to its end.
    The exit status of ``vfd run``."""
    try:
        created = cli.client().post("/v1/sessions", body)
    except VfdError as exc:
        return failed(cli, exc)
    except KeyboardInterrupt:
        sys.stderr.write("vfd: interrupted; the session may have been made (vfd session list)\n")
        return INTERRUPTED
    if detach:
        cli.emit(created, lambda: f"{created.get('short_id')} {created.get('name')}")
        return 0
    return follow_session(cli, created)


class _Terminated(KeyboardInterrupt):
    """SIGTERM while following (``timeout``, ``kill``, a service manager): handled as Ctrl-C."""


def _on_sigterm(signum: int, frame: object) -> None:
    # once: `timeout` signals the command and then its whole process group, and a second
    # interruption inside the DELETE request would break it off half sent
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise _Terminated


def follow_session(cli: CliState, created: dict[str, Any]) -> int:
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
        return failed(cli, exc)
    finally:
        signal.signal(signal.SIGTERM, previous)
    status, code = out.end.get("status"), out.end.get("exit_code")
    if status != "terminated" or not isinstance(code, int):
        code = None
    if cli.json:
        try:
            final = client.get(path)
        except VfdError as exc:
            return failed(cli, exc)
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
