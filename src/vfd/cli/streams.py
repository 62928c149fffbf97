"""A session's output written where the person running ``vfd`` sees it, and the exit statuses
that say how a command that ran something in a session ended.

Output comes as frames (:mod:`vfd.sessions.frames`, read by ``VfdClient.frames``) and is
written as it arrives: the container's stdout to our stdout, its stderr to our stderr, bytes
untouched and flushed at once, so ``vfd run`` can stand where the command would (pipes,
redirections, interleaving on a terminal). Used by ``vfd run``, ``vfd session logs`` and
``vfd session exec``.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vfd.cli.client import VfdClient
from vfd.cli.output import print_error
from vfd.cli.state import CliState
from vfd.errors import ErrorCode, VfdError

if TYPE_CHECKING:
    import typer

    from vfd.sessions.frames import Kind

INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT), as shells report it."""

FAILED = 125
"""Exit status of ``vfd run``/``vfd session exec`` when vfd, not the command, failed (as
``docker run`` uses it): the request was refused, or the session ended cancelled or error."""


@dataclass
class Output:
    """What a stream of frames ended with, and the output kept when asked (``--json``)."""

    end: dict[str, Any]
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)

    def as_json(self) -> dict[str, Any]:
        """The output as JSON fields (bytes that are not UTF-8 as ``stdout_b64``...)."""
        return {
            "stdout": bytes(self.stdout).decode(errors="surrogateescape"),
            "stderr": bytes(self.stderr).decode(errors="surrogateescape"),
        }


def write_output(frames: Iterable[tuple[Kind, bytes]], *, keep: bool = False) -> Output:
    """Write ``STDOUT``/``STDERR`` frames to our stdout/stderr as they come (flushed), or keep
    them when ``keep``; return with the ``END`` frame's object."""
    from vfd.sessions.frames import Kind

    out = Output(end={})
    for kind, payload in frames:
        if kind is Kind.END:
            try:
                end = json.loads(payload)
            except ValueError:
                end = None
            if not isinstance(end, dict):
                raise VfdError(
                    ErrorCode.INTERNAL, f"the output ended with an unreadable frame: {payload!r}"
                )
            out.end = end
            return out
        if keep:
            (out.stdout if kind is Kind.STDOUT else out.stderr).extend(payload)
            continue
        stream = sys.stdout if kind is Kind.STDOUT else sys.stderr
        stream.flush()
        stream.buffer.write(payload)
        stream.buffer.flush()
    return out


def follow(
    client: VfdClient,
    method: str,
    path: str,
    *,
    keep: bool,
    params: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
) -> Output:
    """Stream one output request to the end (see :func:`write_output`)."""
    with contextlib.closing(client.frames(method, path, params=params, json=body)) as frames:
        return write_output(frames, keep=keep)


def exit_for(cli: CliState, error: VfdError) -> typer.Exit:
    """Print ``error`` as every error is printed, and the exit that says vfd failed (125)."""
    import typer  # here: vfd run's fast path imports this module without the CLI framework

    print_error(error, as_json=cli.json)
    return typer.Exit(FAILED)
