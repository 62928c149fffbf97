"""The idle and lifetime reaper on a real node (reaper pass every 0.3 s): a session past its
lifetime, its own or its policy's, and an idle one under an idle timeout are stopped with the
reason shown by ``vfd session info``; a busy one is left running."""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest
from sessionapi import FINAL, destroy, start
from sessionnode import IMAGE, SessionNode
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import unix_connect

NODE_CONFIG = """
[sessions]
reap_interval = 0.3
stop_timeout = 1
"""

SLEEP = ["sleep", "1000"]


def _policy(node: SessionNode, email: str, *args: str) -> None:
    name = f"pol-{secrets.token_hex(3)}"
    node.cli.json("admin", "policy", "create", name, *args)
    node.cli.json("admin", "policy", "assign", name, email)


@pytest.fixture
def email(node: SessionNode, image: str) -> str:
    out: str = node.user()["email"]
    return out


def _ended_by(node: SessionNode, email: str, ref: str, timeout: float) -> dict[str, Any]:
    ended = node.wait_status(ref, FINAL, as_=email, timeout=timeout)
    assert ended["status"] == "terminated", ended
    return ended


def _reasons(session: dict[str, Any]) -> list[str]:
    return [str(e["reason"]) for e in session["events"]]


def test_policies_reaper_own_lifetime(node: SessionNode, email: str) -> None:
    done = node.run("run", "-d", "--json", "--lifetime", "1", IMAGE, *SLEEP, as_=email)
    assert done.returncode == 0, done.stderr
    made = node.session(done.stdout.split('"id": "', 1)[1].split('"', 1)[0], email)
    started = time.monotonic()
    ended = _ended_by(node, email, made["id"], timeout=30)
    assert time.monotonic() - started >= 0.9
    assert "destroyed by vfd (lifetime 1s reached)" in _reasons(ended), ended["events"]
    info = node.run("session", "info", made["id"], as_=email)
    assert info.returncode == 0 and "lifetime 1s reached" in info.stdout, info.stdout


def test_policies_reaper_policy_max_lifetime(node: SessionNode, email: str) -> None:
    _policy(node, email, "--max-lifetime", "1.5")
    made = start(node, email, SLEEP)
    assert made["lifetime"] is None
    ended = _ended_by(node, email, made["id"], timeout=30)
    assert "destroyed by vfd (lifetime 1.5s reached)" in _reasons(ended), ended["events"]


def test_policies_reaper_idle_session_ends_busy_one_stays(node: SessionNode, email: str) -> None:
    _policy(node, email, "--idle-timeout", "2")
    busy = start(node, email, ["sh", "-c", "while :; do :; done"], cpu=0.2)
    idle = start(node, email, SLEEP)
    node.wait_status(busy["id"], {"running"}, as_=email)
    ended = _ended_by(node, email, idle["id"], timeout=30)
    reason = next(r for r in _reasons(ended) if "idle for" in r)
    assert reason.startswith("destroyed by vfd (idle for ") and reason.endswith("s)"), reason
    assert int(reason.rsplit("for ", 1)[1].rstrip("s)")) >= 2
    info = node.run("session", "info", idle["id"], as_=email)
    assert info.returncode == 0 and "idle for" in info.stdout, info.stdout

    # the busy one used more than idle_cpu all along: still running, its activity stamped
    still = node.session(busy["id"], email)
    assert still["status"] == "running", still
    assert still["last_activity_at"] is not None
    destroy(node, email, busy["id"])


def test_policies_reaper_no_limits_no_reaping(node: SessionNode, email: str) -> None:
    made = start(node, email, SLEEP)
    node.wait_status(made["id"], {"running"}, as_=email)
    deadline = time.monotonic() + 2  # several reaper passes
    while time.monotonic() < deadline:
        assert node.session(made["id"], email)["status"] == "running"
        time.sleep(0.2)
    destroy(node, email, made["id"])


def test_policies_reaper_open_shell_is_not_idle(node: SessionNode, email: str) -> None:
    """A shell someone sits at uses no cpu, yet the session is in use: it is not reaped while
    the shell is open, and is once it has been closed for the idle timeout."""
    _policy(node, email, "--idle-timeout", "2")
    made = start(node, email, SLEEP)
    node.wait_status(made["id"], {"running"}, as_=email)
    with unix_connect(
        str(node.config.api_socket),
        f"ws://localhost/v1/sessions/{made['id']}/shell",
        additional_headers={"X-Vfd-Act-As": email},
    ) as ws:
        time.sleep(4)  # twice the idle timeout, a dozen reaper passes
        assert node.session(made["id"], email)["status"] == "running"
        ws.send(b"exit 0\n")
        with pytest.raises(ConnectionClosed):
            while True:
                ws.recv(timeout=30)
    closed = time.monotonic()
    ended = _ended_by(node, email, made["id"], timeout=30)
    assert time.monotonic() - closed >= 1.5  # idle counted from the shell's close
    assert any("idle for" in r for r in _reasons(ended)), ended["events"]
