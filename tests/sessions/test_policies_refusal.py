"""Session requests against resource policies, groups and presets on a real node: a request
above an absolute limit is refused at once naming the limit; one within them is stored with
its group, size and lifetime, and waits with the scheduler's verdict when the node is full."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from typing import Any

import pytest
from sessionapi import destroy, post, refused, start, wait_verdict
from sessionnode import IMAGE, SessionNode

NODE_CONFIG = """
[sessions]
cpu = 2
"""

SLEEP = ["sleep", "1000"]
MiB = 2**20


def _name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def _admin(node: SessionNode, *args: str) -> Any:
    return node.cli.json("admin", *args)


@pytest.fixture
def limited(node: SessionNode, image: str) -> tuple[str, str]:
    """A user under a new policy: 1.5 cpu and 256 MiB for all sessions, lifetime at most an
    hour, images vfd-test/*, groups default and a new group open only to that user; (the
    user's email, the new group)."""
    group, policy = _name("grp"), _name("pol")
    email: str = node.user()["email"]
    _admin(node, "resource-group", "create", group, "--allow-user", email)
    _admin(
        node, "policy", "create", policy, "--max-cpu", "1.5", "--max-mem", "256m",
        "--max-lifetime", "1h", "--allow-image", "vfd-test/*", "--allow-group", "default",
        "--allow-group", group, "--max-sessions", "1",
    )  # fmt: skip
    node.cli.json("admin", "policy", "assign", policy, email)
    return email, group


def test_policies_refusal_names_the_limit(node: SessionNode, limited: tuple[str, str]) -> None:
    email, _ = limited
    base = {"image": IMAGE, "command": SLEEP, "memory": 64 * MiB}
    error = refused(post(node, email, **{**base, "cpu": 2}), 403, "policy_violation")
    assert error["details"]["limit"] == "max_session_cpu"
    assert (error["details"]["asked"], error["details"]["allowed"]) == (2, 1.5)
    assert "1.5 cpu" in error["message"]
    error = refused(post(node, email, **{**base, "memory": 512 * MiB}), 403, "policy_violation")
    assert error["details"]["limit"] == "max_session_memory"
    assert error["details"]["allowed"] == 256 * MiB
    error = refused(post(node, email, **{**base, "memory": 0}), 403, "policy_violation")
    assert error["details"]["limit"] == "max_session_memory" and "--mem" in error["message"]
    error = refused(post(node, email, **{**base, "lifetime": 7200}), 403, "policy_violation")
    assert error["details"] == {**error["details"], "limit": "max_lifetime", "asked": 7200}
    error = refused(post(node, email, **{**base, "image": "busybox"}), 403, "policy_violation")
    assert error["details"]["limit"] == "allowed_images"
    assert error["details"]["allowed"] == ["vfd-test/*"]

    other = _name("grp")
    _admin(node, "resource-group", "create", other)
    error = refused(post(node, email, **{**base, "group": other}), 403, "policy_violation")
    assert error["details"]["limit"] == "allowed_groups" and other in error["message"]
    refused(post(node, email, **{**base, "group": _name("none")}), 404, "group_not_found")
    refused(post(node, email, **{**base, "preset": _name("none")}), 404, "preset_not_found")
    refused(post(node, email, **{**base, "lifetime": 0}), 400, "invalid_argument")
    with node.http(email) as http:
        assert http.get("/v1/sessions").json()["sessions"] == []  # nothing was stored


def test_policies_refusal_group_access(node: SessionNode, limited: tuple[str, str]) -> None:
    _, group = limited
    stranger: str = node.user()["email"]
    answer = post(node, stranger, image=IMAGE, command=SLEEP, group=group)
    error = refused(answer, 403, "policy_violation")
    assert error["details"]["limit"] == "group_access" and stranger in error["message"]


def test_policies_refusal_cli_exit_and_message(node: SessionNode, limited: tuple[str, str]) -> None:
    email, _ = limited
    done = node.run("run", "--cpu", "4", "--mem", "64m", IMAGE, "true", as_=email)
    assert done.returncode == 125, (done.stdout, done.stderr)
    assert "[policy_violation]" in done.stderr and "1.5 cpu" in done.stderr, done.stderr
    done = node.run("run", "--lifetime", "soon", IMAGE, "true", as_=email)
    assert done.returncode == 2 and "not a duration" in done.stderr, done.stderr


def test_policies_within_limits_stored_with_group_preset_lifetime(
    node: SessionNode, limited: tuple[str, str]
) -> None:
    email, group = limited
    preset = _name("small")
    _admin(node, "preset", "create", preset, "--cpu", "0.5", "--mem", "128m")
    done = node.run(
        "run", "-d", "--json", "--group", group, "--preset", preset, "--lifetime", "30m",
        IMAGE, *SLEEP, as_=email,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    made = node.session(_json(done.stdout)["id"], email)
    assert (made["group"], made["cpu"], made["memory"]) == (group, 0.5, 128 * MiB)
    assert made["lifetime"] == 1800 and made["last_activity_at"] is None
    # --cpu and --mem override the preset's
    done = node.run(
        "run", "-d", "--json", "--preset", preset, "--cpu", "1", IMAGE, *SLEEP, as_=email
    )
    assert done.returncode == 0, done.stderr
    second = node.session(_json(done.stdout)["id"], email)
    assert (second["group"], second["cpu"], second["memory"]) == ("default", 1, 128 * MiB)
    assert second["lifetime"] is None
    for ref in (made["id"], second["id"]):
        destroy(node, email, ref)


def test_policies_full_node_waits_with_verdict(node: SessionNode, limited: tuple[str, str]) -> None:
    """Within the policy but not the node's free capacity: accepted, and it waits with the
    scheduler's reason shown by `vfd session info`."""
    email, _ = limited
    owner: str = node.user()["email"]
    hog = start(node, owner, SLEEP, cpu=2)
    node.wait_status(hog["id"], {"running"}, as_=owner)
    waiting = start(node, email, SLEEP, cpu=1, memory=64 * MiB)
    seen = wait_verdict(node, email, waiting["id"])
    assert seen["status"] == "pending" and "cpu" in seen["verdict"]
    info = node.run("session", "info", waiting["id"], as_=email)
    assert info.returncode == 0 and seen["verdict"][:30] in info.stdout, info.stdout
    destroy(node, email, waiting["id"])
    destroy(node, owner, hog["id"])


def test_policies_over_max_sessions_waits_then_starts(
    node: SessionNode, limited: tuple[str, str]
) -> None:
    """Within every absolute limit but over max_sessions (1): accepted, waits with the
    verdict saying so, and starts when the first one ends."""
    email, _ = limited
    first = start(node, email, SLEEP, cpu=0.5, memory=64 * MiB)
    node.wait_status(first["id"], {"running"}, as_=email)
    second = start(node, email, SLEEP, cpu=0.5, memory=64 * MiB)
    seen = wait_verdict(node, email, second["id"])
    assert seen["status"] == "pending", seen
    failing = [v for v in seen["verdicts"] if not v["ok"]]
    assert failing and failing[0]["reason"] == seen["verdict"], seen["verdicts"]
    assert "session" in seen["verdict"], seen["verdict"]
    # every verdict in `vfd session info`, the failing ones named in `vfd session list`
    info = node.run("session", "info", second["id"], as_=email)
    assert info.returncode == 0, info.stderr
    for v in seen["verdicts"]:
        assert f"{v['name']}" in info.stdout and v["reason"][:40] in info.stdout, info.stdout
    assert f"{failing[0]['name']}  no: " in info.stdout, info.stdout
    table = subprocess.run(
        node.argv("session", "list", as_=email),
        capture_output=True,
        text=True,
        env={**os.environ, **node.env, "COLUMNS": "250"},
        timeout=120,
    )
    row = next(line for line in table.stdout.splitlines() if line.startswith(second["short_id"]))
    assert row.split()[-1] == ",".join(v["name"] for v in failing), table.stdout
    destroy(node, email, first["id"])
    node.wait_status(second["id"], {"running"}, as_=email)
    destroy(node, email, second["id"])


def _json(text: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(text)
    return out
