"""The container a session runs in: who it runs as, its limits and labels, its exit, how it is
stopped, and what is left of it — through the API, with real containers."""

from __future__ import annotations

import time

from filenode import wait_until
from runtimekit import inspect, scratch
from sessionapi import logs, run_to_end, start
from sessionnode import SessionNode

STOP_TIMEOUT = 3
NODE_CONFIG = f"[sessions]\nstop_timeout = {STOP_TIMEOUT}\n"


def test_runtime_container_runs_as_the_user_with_init_and_no_new_privileges(
    node: SessionNode,
) -> None:
    user = node.user()
    script = (
        "id -u; id -g; echo $HOME; pwd; cat /proc/1/cmdline | tr '\\0' ' '; echo; "
        "grep NoNewPrivs /proc/self/status; grep CapEff /proc/self/status; "
        "echo $VFD_SESSION_ID; ls -ld /home/work | awk '{print $3}'"
    )
    ended = run_to_end(node, user["email"], ["sh", "-c", script])
    assert ended["status"] == "terminated", ended
    out, _, end = logs(node, user["email"], ended["id"])
    lines = out.decode().splitlines()
    assert lines[0] == str(user["uid"]) and lines[1] == str(user["gid"])
    assert lines[2] == "/home/work" and lines[3] == "/home/work"
    assert lines[4].startswith("/sbin/docker-init -- sh"), lines[4]
    assert lines[5].split() == ["NoNewPrivs:", "1"]
    assert lines[6].split() == ["CapEff:", "0000000000000000"]
    assert lines[7] == ended["id"]
    assert lines[8] in (str(user["uid"]), user.get("username", "?")), lines[8]
    assert end == {"status": "terminated", "exit_code": 0, "reason": "exited with code 0"}


def test_runtime_container_limits_and_labels_in_docker(node: SessionNode) -> None:
    user = node.user()
    made = start(node, user["email"], ["sleep", "1000"], cpu=0.5, memory=64 << 20)
    running = node.wait_status(made["id"], {"running"}, as_=user["email"])
    seen = inspect(running["container_id"])
    assert seen is not None
    host, config = seen["HostConfig"], seen["Config"]
    assert host["NanoCpus"] == 500_000_000
    assert host["Memory"] == 64 << 20 and host["MemorySwap"] == 64 << 20
    assert host["Init"] is True
    assert "no-new-privileges" in host["SecurityOpt"]
    assert config["User"] == f"{user['uid']}:{user['gid']}"
    assert config["WorkingDir"] == "/home/work"
    assert config["Labels"]["vfd.session"] == made["id"]
    assert config["Labels"]["vfd.node"] == node.node_name
    assert config["Labels"]["vfd.user"]  # the user id: ties the container to its owner
    assert config["Hostname"] == made["name"][:63]
    assert "HOME=/home/work" in config["Env"]
    with node.http(user["email"]) as http:
        assert http.delete(f"/v1/sessions/{made['id']}", params={"force": "true"}).is_success


def test_runtime_container_exit_code_recorded(node: SessionNode) -> None:
    user = node.user()
    ended = run_to_end(node, user["email"], ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert ended["status"] == "terminated" and ended["exit_code"] == 3, ended
    assert ended["status_reason"] == "exited with code 3"
    out, err, end = logs(node, user["email"], ended["id"])
    assert (out, err) == (b"out\n", b"err\n")
    assert end is not None and end["exit_code"] == 3
    # without --rm the container is kept (docker logs, inspect) until the session is destroyed
    assert inspect(ended["container_id"]) is not None
    with node.http(user["email"]) as http:
        assert http.delete(f"/v1/sessions/{ended['id']}").is_success
    wait_until("the kept container removed", lambda: inspect(ended["container_id"]) is None)
    assert logs(node, user["email"], ended["id"])[0] == b"out\n"  # from the saved output


def test_runtime_container_auto_remove_keeps_logs(node: SessionNode) -> None:
    user = node.user()
    ended = run_to_end(node, user["email"], ["sh", "-c", "echo kept; exit 0"], auto_remove=True)
    assert ended["status"] == "terminated", ended
    wait_until("the container removed", lambda: inspect(ended["container_id"]) is None)
    out, _, end = logs(node, user["email"], ended["id"])
    assert out == b"kept\n" and end is not None and end["status"] == "terminated"
    wait_until("the work dir removed", lambda: not (scratch(node, ended["id"]) / "work").exists())


def test_runtime_container_destroy_stops_within_stop_timeout(node: SessionNode) -> None:
    user = node.user()
    made = start(node, user["email"], ["sleep", "1000"])
    node.wait_status(made["id"], {"running"}, as_=user["email"])
    began = time.monotonic()
    with node.http(user["email"]) as http:
        answer = http.delete(f"/v1/sessions/{made['id']}")
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] in ("terminating", "terminated")
    ended = node.wait_status(made["id"], {"terminated"}, as_=user["email"])
    assert time.monotonic() - began < STOP_TIMEOUT, "sleep ends on SIGTERM at once"
    assert ended["status_reason"].startswith("stopped (destroyed by "), ended
    statuses = [e["status"] for e in ended.get("events") or node.session(made["id"])["events"]]
    assert statuses[-2:] == ["terminating", "terminated"]


def test_runtime_container_ignoring_sigterm_is_killed_after_stop_timeout(
    node: SessionNode,
) -> None:
    user = node.user()
    made = start(node, user["email"], ["sh", "-c", "trap '' TERM; while :; do sleep 1; done"])
    node.wait_status(made["id"], {"running"}, as_=user["email"])
    began = time.monotonic()
    with node.http(user["email"]) as http:
        assert http.delete(f"/v1/sessions/{made['id']}").is_success
    ended = node.wait_status(made["id"], {"terminated"}, as_=user["email"])
    took = time.monotonic() - began
    assert STOP_TIMEOUT - 0.5 <= took < STOP_TIMEOUT + 10, took
    assert ended["exit_code"] == 137


def test_runtime_container_force_destroy_kills_at_once(node: SessionNode) -> None:
    user = node.user()
    made = start(node, user["email"], ["sh", "-c", "trap '' TERM; while :; do sleep 1; done"])
    node.wait_status(made["id"], {"running"}, as_=user["email"])
    began = time.monotonic()
    with node.http(user["email"]) as http:
        assert http.delete(f"/v1/sessions/{made['id']}", params={"force": "true"}).is_success
    ended = node.wait_status(made["id"], {"terminated"}, as_=user["email"])
    assert time.monotonic() - began < STOP_TIMEOUT
    assert ended["exit_code"] == 137


def test_runtime_container_missing_program_exits_127(node: SessionNode) -> None:
    """docker-init starts the command: a program that is not there is an exit code (127), as
    with ``docker run --init``, and the work directory is removed all the same."""
    user = node.user()
    ended = run_to_end(node, user["email"], ["/no/such/program"])
    assert ended["status"] == "terminated" and ended["exit_code"] == 127, ended
    _, err, _ = logs(node, user["email"], ended["id"])
    assert b"/no/such/program" in err
    wait_until("the work dir removed", lambda: not (scratch(node, ended["id"]) / "work").exists())
