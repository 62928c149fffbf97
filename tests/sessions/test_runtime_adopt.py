"""Restart safety: containers outlive the daemon. A restarted daemon adopts the containers that
still run, records those that exited or vanished meanwhile — and what sessions see of their
folders when mountd restarts under them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from runtimekit import daemon_pid, logs, start, wait_until
from sessionnode import SessionNode

NODE_CONFIG = "[sessions]\nstop_timeout = 3\n"
DOWN = "while the daemon was down"


def _restart_up(node: SessionNode) -> None:
    """Stop ``vfd up`` (daemon and mountd) and start it again on the same state directory."""
    node.stop()
    with open(node.log, "ab") as out:
        node.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "vfd"), "--state-dir", str(node.state_dir), "up"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith("VFD_")},
        )
    node.wait_ready()


def _docker(*args: str) -> None:
    subprocess.run(["docker", *args], check=True, capture_output=True, timeout=60)


def test_runtime_adopt_after_the_daemon_restarts(node: SessionNode) -> None:
    """Running: adopted (it can still be destroyed, and ends recorded). Exited meanwhile:
    terminated with its exit code. Removed meanwhile: error."""
    user = node.user()
    email = user["email"]
    survivor = start(node, email, ["sh", "-c", "echo before; sleep 1000"], cpu=0.1)
    exits = start(node, email, ["sh", "-c", "trap 'exit 9' TERM; sleep 1000 & wait"], cpu=0.1)
    vanishes = start(node, email, ["sleep", "1000"], cpu=0.1)
    running = {
        s["id"]: node.wait_status(s["id"], {"running"}, as_=email)
        for s in (survivor, exits, vanishes)
    }
    node.stop()
    _docker("stop", "-t", "10", running[exits["id"]]["container_id"])
    _docker("rm", "-f", running[vanishes["id"]]["container_id"])
    _restart_up(node)

    ended = node.wait_status(exits["id"], {"terminated"}, as_=email)
    assert ended["exit_code"] == 9, ended
    assert ended["status_reason"] == f"exited {DOWN} (exit code 9)"
    gone = node.wait_status(vanishes["id"], {"error"}, as_=email)
    assert gone["status_reason"] == f"its container vanished {DOWN}"
    adopted = node.session(survivor["id"], email)
    assert adopted["status"] == "running"
    assert logs_of_running(node, email, survivor["id"]).startswith(b"before\n")
    with node.http(email) as http:
        assert http.delete(f"/v1/sessions/{survivor['id']}").is_success
    stopped = node.wait_status(survivor["id"], {"terminated"}, as_=email)
    assert stopped["status_reason"].startswith("stopped (destroyed by ")


def logs_of_running(node: SessionNode, email: str, ref: str) -> bytes:
    return logs(node, email, ref)[0]


def test_runtime_adopt_after_a_daemon_crash(node: SessionNode) -> None:
    """SIGKILL of the daemon alone (``vfd up`` restarts it): the session runs on, is adopted,
    and its exit is recorded by the new daemon."""
    user = node.user()
    email = user["email"]
    made = start(node, email, ["sleep", "1000"], cpu=0.1)
    node.wait_status(made["id"], {"running"}, as_=email)
    old = daemon_pid(node)
    os.kill(old, signal.SIGKILL)
    wait_until("a new daemon", lambda: _new_daemon(node, old))
    node.wait_ready()
    assert node.session(made["id"], email)["status"] == "running"
    with node.http(email) as http:
        assert http.delete(f"/v1/sessions/{made['id']}", params={"force": "true"}).is_success
    ended = node.wait_status(made["id"], {"terminated"}, as_=email)
    assert ended["exit_code"] == 137


def _new_daemon(node: SessionNode, old: int) -> bool:
    try:
        return daemon_pid(node) != old
    except OSError:
        return False
