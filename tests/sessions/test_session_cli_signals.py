"""Signals to a following ``vfd run`` (docs/sessions.md): Ctrl-C (SIGINT) and SIGTERM — from
``timeout``, ``kill`` or a service manager — end the session, instead of leaving it running
with no one following it, and ``vfd run`` exits 128 + the signal's number."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator

import pytest
from sessionnode import IMAGE, SessionNode


@contextlib.contextmanager
def following(node: SessionNode, email: str, name: str) -> Iterator[subprocess.Popen[bytes]]:
    """``vfd run --name NAME`` of a long sleep, once its command has started; killed on the
    way out if it is still running."""
    argv = node.argv("run", "--name", name, IMAGE, "sh", "-c", "echo ready; sleep 300", as_=email)
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **node.env}
    ) as process:
        try:
            assert process.stdout is not None and process.stderr is not None
            assert process.stdout.readline() == b"ready\n"
            yield process
        finally:
            if process.poll() is None:
                process.kill()


def statuses(node: SessionNode, email: str, name: str) -> list[str]:
    """The statuses of ``email``'s sessions named ``name``, live or ended."""
    listed = json.loads(node.run("session", "list", "--all", "--json", as_=email).stdout)
    return [s["status"] for s in listed["sessions"] if s["name"] == name]


@pytest.mark.parametrize(
    ("sig", "name"), [(signal.SIGINT, "interrupted"), (signal.SIGTERM, "termed")]
)
def test_session_cli_signals_destroy_the_followed_session(
    node: SessionNode, image: str, sig: signal.Signals, name: str
) -> None:
    e = node.user()["email"]
    with following(node, e, name) as process:
        process.send_signal(sig)
        code = process.wait(120)
        assert process.stderr is not None
        stderr = process.stderr.read().decode()
    assert code == 128 + sig, stderr  # 130 for Ctrl-C, 143 for SIGTERM
    assert "destroying session" in stderr
    assert statuses(node, e, name) == ["terminated"]  # stopped before vfd run exited


def test_session_cli_signals_a_second_sigterm_changes_nothing(
    node: SessionNode, image: str
) -> None:
    """``timeout`` signals the command and then its process group: two SIGTERMs. The second,
    arriving while the session is destroyed, must not break off the destroy request half sent
    (``lost the vfd daemon``) nor escalate to a kill."""
    e = node.user()["email"]
    with following(node, e, "twice") as process:
        assert process.stderr is not None
        process.send_signal(signal.SIGTERM)
        first = process.stderr.readline().decode()
        assert "destroying session" in first, first
        process.send_signal(signal.SIGTERM)  # while vfd run destroys the session
        code = process.wait(120)
        stderr = first + process.stderr.read().decode()
    assert code == 128 + signal.SIGTERM, stderr
    assert "error" not in stderr and "killing" not in stderr, stderr
    assert statuses(node, e, "twice") == ["terminated"]
