"""GPU sessions on declared devices, through the real daemon and docker: ``vfd run --fgpu``
holds shares of a device (its container gets the devices' env and the ``vfd.allocation``
label), a request no device can serve now waits with the scheduler's verdict, ending a session
frees its share, and a restarted daemon takes a running session's allocation back from its
container.

The node declares two devices (``[plugins.cuda] devices``) in fractional mode: each is worth
1.0 share. Docker has no NVIDIA runtime here, so the container gets the env and labels but no
device request (docs/accelerators.md).
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from sessionapi import destroy, post, refused, wait_verdict
from sessionnode import IMAGE, SessionNode

GPU_A = "GPU-00000000-0000-4000-8000-00000000000a"
GPU_B = "GPU-00000000-0000-4000-8000-00000000000b"
NODE_CONFIG = f"""
[sessions]
stop_timeout = 3

[plugins.cuda]
mode = "fractional"
devices = [
  {{ uuid = "{GPU_A}", name = "Declared A100", memory = "80GiB", sm = 108 }},
  {{ uuid = "{GPU_B}", name = "Declared A100", memory = "80GiB", sm = 108 }},
]
"""


def _run(node: SessionNode, email: str, *args: str) -> subprocess.CompletedProcess[str]:
    return node.run("run", "-d", "--json", *args, IMAGE, "sleep", "1000", as_=email)


def _wide(node: SessionNode, *args: str, as_: str | None = None) -> str:
    """``vfd ARGS`` printing tables wide enough not to fold a cell; its stdout (checked)."""
    out = subprocess.run(
        node.argv(*args, as_=as_),
        capture_output=True,
        text=True,
        env={**os.environ, **node.env, "COLUMNS": "250"},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def _started(node: SessionNode, email: str, *args: str) -> dict[str, Any]:
    out = _run(node, email, *args)
    assert out.returncode == 0, out.stderr
    created: dict[str, Any] = json.loads(out.stdout)
    return created


def _inspect(container_id: str) -> dict[str, Any]:
    out = subprocess.run(
        ["docker", "inspect", container_id], capture_output=True, text=True, check=True
    )
    found: dict[str, Any] = json.loads(out.stdout)[0]
    return found


def _held(session: dict[str, Any]) -> list[tuple[str, str, float]]:
    return [(a["slot"], a["device"], a["amount"]) for a in session["allocation"]]


def test_gpu_fractional_sessions_on_declared_devices(node: SessionNode) -> None:
    email = node.user()["email"]
    first = _started(node, email, "--fgpu", "0.6")
    assert first["slots"] == {"cuda.shares": 0.6}
    running = node.wait_status(first["id"], {"running"}, as_=email)
    assert _held(running) == [("cuda.shares", GPU_A, 0.6)]

    info = _wide(node, "session", "info", first["id"], as_=email)
    assert f"0.6 cuda.shares on {GPU_A}" in info, info
    listed = _wide(node, "session", "list", as_=email)
    assert "GPU" in listed.splitlines()[0].split(), listed
    assert "0.6 cuda.shares" in listed, listed

    seen = _inspect(running["container_id"])
    env = dict(e.split("=", 1) for e in seen["Config"]["Env"])
    assert env["NVIDIA_VISIBLE_DEVICES"] == GPU_A
    assert env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "60"
    assert env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == f"0={int(80 * 1024 * 0.6)}M"
    label = json.loads(seen["Config"]["Labels"]["vfd.allocation"])
    assert label == [{"slot": "cuda.shares", "device": GPU_A, "amount": 0.6}]

    nodes = _wide(node, "admin", "node", "list")
    assert "cuda: 1.4/2 cuda.shares free on 2 devices" in nodes, nodes

    # 0.4 is left on A: a second 0.6 goes on B
    second = _started(node, email, "--fgpu", "0.6")
    assert _held(node.wait_status(second["id"], {"running"}, as_=email)) == [
        ("cuda.shares", GPU_B, 0.6)
    ]
    # 0.8 free, but at most 0.4 on one device: it waits, and says why
    third = _started(node, email, "--fgpu", "0.5")
    waiting = wait_verdict(node, email, third["id"])
    assert "0.5 cuda.shares asked, 0.8 free but split over devices" in waiting["verdict"]
    assert waiting["allocation"] == []
    shown = _wide(node, "session", "info", third["id"], as_=email)
    assert "split over devices (at most 0.4 on one)" in shown, shown
    assert "none yet" in shown, shown

    # ending the first frees its share: the third is placed on A
    destroy(node, email, first["id"])
    placed = node.wait_status(third["id"], {"running"}, as_=email)
    assert _held(placed) == [("cuda.shares", GPU_A, 0.5)]
    ended = node.session(first["id"], email)
    assert ended["status"] == "terminated"
    for s in (second, third):
        destroy(node, email, s["id"])


def test_gpu_requests_refused_with_their_reason(node: SessionNode) -> None:
    email = node.user()["email"]
    for args, words in (
        (("--fgpu", "0.25"), "cuda.shares is taken in steps of 0.1"),
        (("--fgpu", "0"), "cuda.shares must be a positive number"),
        (("--gpu", "1", "--fgpu", "0.5"), "cannot be asked together"),
        (("--slot", "tpu.core=1"), "no slot 'tpu.core'"),
    ):
        out = _run(node, email, *args)
        assert out.returncode != 0, out
        error = json.loads(out.stdout or out.stderr)
        assert error["error"]["code"] == "invalid_argument", error
        assert words in error["error"]["message"], error
    for amount in ("1e400", "-0.5", "true", '"0.5"'):  # 1e400 is infinity to JSON readers
        body = f'{{"image": "{IMAGE}", "slots": {{"cuda.shares": {amount}}}}}'
        with node.http(email) as http:
            answer = http.post(
                "/v1/sessions", content=body, headers={"content-type": "application/json"}
            )
        refused(answer, 400, "invalid_argument")
    # more than the node has in all, and whole devices on a node offering shares: refused now
    for slots in ({"cuda.shares": 2.5}, {"cuda.device": 1}):
        answer = post(node, email, image=IMAGE, command=["true"], slots=slots)
        error = refused(answer, 400, "exceeds_capacity")
        assert error["details"]["resource"] == next(iter(slots)), error


def _restart_up(node: SessionNode) -> None:
    with open(node.log, "ab") as out:
        node.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "vfd"), "--state-dir", str(node.state_dir), "up"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith("VFD_")},
        )
    node.wait_ready()


def test_gpu_allocation_rebuilt_from_the_container_after_a_restart(node: SessionNode) -> None:
    email = node.user()["email"]
    kept = _started(node, email, "--fgpu", "0.6")
    node.wait_status(kept["id"], {"running"}, as_=email)
    node.stop()
    with sqlite3.connect(node.state_dir / "vfd.db") as db:
        row = kept["id"].replace("-", "")  # uuids are hex on SQLite
        db.execute("UPDATE session SET allocation = NULL WHERE id = ?", (row,))
        assert db.total_changes == 1
    _restart_up(node)

    back = node.wait_status(kept["id"], {"running"}, as_=email)
    assert _held(back) == [("cuda.shares", GPU_A, 0.6)]
    info = _wide(node, "session", "info", kept["id"], as_=email)
    assert f"0.6 cuda.shares on {GPU_A}" in info, info
    # A has 0.4 free again: a new 0.5 goes on B, not on the share the kept session holds
    other = _started(node, email, "--fgpu", "0.5")
    assert _held(node.wait_status(other["id"], {"running"}, as_=email)) == [
        ("cuda.shares", GPU_B, 0.5)
    ]
    for s in (kept, other):
        destroy(node, email, s["id"])


def test_gpu_presets_and_policies_carry_slots(node: SessionNode) -> None:
    email = node.user()["email"]
    preset = f"half-{secrets.token_hex(3)}"
    made = node.cli.json("admin", "preset", "create", preset, "--cpu", "0.5", "--fgpu", "0.5")
    assert made["slots"] == {"cuda.shares": 0.5}
    assert "0.5 cuda.shares" in _wide(node, "admin", "preset", "list")
    bad = node.run("admin", "preset", "create", f"p-{secrets.token_hex(3)}", "--cpu", "1",
                   "--fgpu", "0.25")  # fmt: skip
    assert bad.returncode != 0 and "[invalid_argument]" in bad.stderr, bad

    # the preset's slots, unless the request names its own
    by_preset = _started(node, email, "--preset", preset)
    assert by_preset["slots"] == {"cuda.shares": 0.5}
    own = _started(node, email, "--preset", preset, "--fgpu", "0.2")
    assert own["slots"] == {"cuda.shares": 0.2}
    for s in (by_preset, own):
        destroy(node, email, s["id"])

    policy = f"pol-{secrets.token_hex(3)}"
    made = node.cli.json("admin", "policy", "create", policy, "--max-slot", "cuda.shares=0.5")
    assert made["max_slots"] == {"cuda.shares": 0.5}
    node.cli.json("admin", "policy", "assign", policy, email)
    over = _run(node, email, "--fgpu", "0.6")
    assert over.returncode != 0
    error = json.loads(over.stdout)["error"]
    assert error["code"] == "policy_violation", error
    assert error["details"]["limit"] == "max_slots.cuda.shares", error
    assert "0.6 cuda.shares asked" in error["message"], error
    wrong = node.run("admin", "policy", "update", policy, "--max-slot", "tpu.core=1")
    assert wrong.returncode != 0 and "no slot 'tpu.core'" in wrong.stderr, wrong
    lifted = node.cli.json("admin", "policy", "update", policy, "--max-slot", "cuda.shares=0")
    assert lifted["max_slots"] == {}
