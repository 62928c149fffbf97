"""Restart safety: containers outlive the daemon. A restarted daemon adopts the containers that
still run, records those that exited or vanished meanwhile — and what sessions see of their
folders when mountd restarts under them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from filenode import wait_until
from runtimekit import daemon_pid
from sessionapi import logs, read_frames, start
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
    # a container of this node's name that this store never made: not vfd's to remove
    foreign = subprocess.run(
        [
            "docker",
            "create",
            "--label",
            f"vfd.node={node.node_name}",
            "--label",
            "vfd.session=00000000-0000-4000-8000-000000000000",
            "vfd-test/busybox:latest",
            "true",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
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
    kept = subprocess.run(["docker", "inspect", foreign], capture_output=True, timeout=60)
    assert kept.returncode == 0, "a container of no session of this store was removed"
    assert "belongs to no session of this store" in node.log.read_text()
    _docker("rm", "-f", foreign)


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


def _exec(node: SessionNode, email: str, ref: str, script: str) -> tuple[bytes, bytes, int]:
    with node.http(email) as http:
        answer = http.post(f"/v1/sessions/{ref}/exec", json={"command": ["sh", "-c", script]})
    out, err, end = read_frames(answer.content)
    assert end is not None
    return out, err, end["exit_code"]


def test_runtime_adopt_mountd_restart_leaves_stale_mounts(node: SessionNode) -> None:
    """mountd restarted under a running session: its folder binds answer ENOTCONN ("Transport
    endpoint is not connected") from then on, its own /home/work is untouched, and the
    session's history says what happened; a new session sees the folder again."""
    user = node.user()
    email = user["email"]
    folder = node.folder(user)["name"]
    made = start(node, email, ["sleep", "1000"], mounts=[folder], cpu=0.1)
    node.wait_status(made["id"], {"running"}, as_=email)
    target = f"/home/work/{folder}"
    assert _exec(node, email, made["id"], f"echo hi > {target}/x; cat {target}/x")[0] == b"hi\n"
    os.kill(node.child_pid(b"vfd.fuse"), signal.SIGKILL)
    wait_until("mountd back", lambda: _restarted(node))
    script = f"cat {target}/x; r=$?; echo ok > /home/work/y; exit $r"
    _, err, code = _exec(node, email, made["id"], script)
    assert code != 0 and b"Transport endpoint is not connected" in err, err
    assert _exec(node, email, made["id"], "cat /home/work/y")[0] == b"ok\n"
    stale = wait_until(
        "the stale-mounts event",
        lambda: [
            e
            for e in node.session(made["id"], email)["events"]
            if (e["reason"] or "").startswith("its folder mounts are stale since mountd restarted")
        ],
    )
    assert stale[0]["status"] == "running" and "destroy it and run it again" in stale[0]["reason"]
    again = start(node, email, ["cat", f"{target}/x"], mounts=[folder], cpu=0.1)
    ended = node.wait_status(again["id"], {"terminated", "error"}, as_=email)
    assert ended["exit_code"] == 0, ended
    assert logs(node, email, again["id"])[0] == b"hi\n"
    assert not [
        e for e in node.session(again["id"], email)["events"] if "stale" in (e["reason"] or "")
    ]
    with node.http(email) as http:
        assert http.delete(f"/v1/sessions/{made['id']}", params={"force": "true"}).is_success


def _restarted(node: SessionNode) -> bool:
    try:
        node.wait_ready()
    except BaseException:
        return False
    return "mountd restarted" in node.log.read_text()
