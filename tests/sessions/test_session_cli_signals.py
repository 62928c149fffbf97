"""Signals to a following ``vfd run`` (docs/sessions.md): SIGTERM — from ``timeout``, ``kill``
or a service manager — ends the session as Ctrl-C does, instead of leaving it running with no
one following it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from typing import Any

from sessionnode import IMAGE, SessionNode


def test_session_cli_signals_sigterm_destroys_the_followed_session(
    node: SessionNode, image: str
) -> None:
    e = node.user()["email"]
    argv = node.argv("run", "--name", "termed", IMAGE, "sh", "-c", "echo ready; sleep 300", as_=e)
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **node.env}
    ) as process:
        try:
            assert process.stdout is not None and process.stderr is not None
            assert process.stdout.readline() == b"ready\n"
            process.send_signal(signal.SIGTERM)
            code = process.wait(120)
            stderr = process.stderr.read().decode()
        finally:
            if process.poll() is None:
                process.kill()
    assert code == 128 + signal.SIGTERM, stderr
    assert "destroying session" in stderr
    listed = json.loads(node.run("session", "list", "--all", "--json", as_=e).stdout)["sessions"]
    sessions: list[dict[str, Any]] = [s for s in listed if s["name"] == "termed"]
    assert [s["status"] for s in sessions] == ["terminated"]  # stopped before vfd run exited


def test_session_cli_signals_a_second_sigterm_changes_nothing(
    node: SessionNode, image: str
) -> None:
    """``timeout`` signals the command and then its process group: two SIGTERMs. The second,
    arriving while the session is destroyed, must not break off the destroy request half sent
    (``lost the vfd daemon``) nor escalate to a kill."""
    e = node.user()["email"]
    argv = node.argv("run", "--name", "twice", IMAGE, "sh", "-c", "echo ready; sleep 300", as_=e)
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **node.env}
    ) as process:
        try:
            assert process.stdout is not None and process.stderr is not None
            assert process.stdout.readline() == b"ready\n"
            process.send_signal(signal.SIGTERM)
            first = process.stderr.readline().decode()
            assert "destroying session" in first, first
            process.send_signal(signal.SIGTERM)  # while vfd run destroys the session
            code = process.wait(120)
            stderr = first + process.stderr.read().decode()
        finally:
            if process.poll() is None:
                process.kill()
    assert code == 128 + signal.SIGTERM, stderr
    assert "error" not in stderr and "killing" not in stderr, stderr
    listed = json.loads(node.run("session", "list", "--all", "--json", as_=e).stdout)["sessions"]
    assert [s["status"] for s in listed if s["name"] == "twice"] == ["terminated"]
