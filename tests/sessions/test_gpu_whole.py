"""Whole GPUs on declared devices, through the real daemon and docker: ``vfd run --gpu 2``
takes the two devices closest together, the container sees only the devices it holds (and a
session without GPUs sees none: ``void``), a request for more than is free waits with its
verdict, and shares are refused on a node that offers whole devices.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from sessionapi import destroy, post, refused, start, wait_verdict
from sessionnode import IMAGE, SessionNode

GPU_A = "GPU-00000000-0000-4000-8000-0000000000a1"
GPU_B = "GPU-00000000-0000-4000-8000-0000000000b2"
GPU_C = "GPU-00000000-0000-4000-8000-0000000000c3"
NEAR = f'near = {{ "{GPU_C}" = 10 }}'
"""B and C share a PCIe switch (NVML's level 10); A is only on their NUMA node (40): without
this, two devices would be A and B (the smaller ids)."""
NODE_CONFIG = f"""
[sessions]
stop_timeout = 3

[plugins.cuda]
mode = "whole"
devices = [
  {{ uuid = "{GPU_A}", name = "Declared H100", memory = "80GiB", sm = 132, numa = 0 }},
  {{ uuid = "{GPU_B}", name = "Declared H100", memory = "80GiB", sm = 132, numa = 0, {NEAR} }},
  {{ uuid = "{GPU_C}", name = "Declared H100", memory = "80GiB", sm = 132, numa = 0 }},
]
"""
SLEEP = ["sleep", "1000"]


def _env(container_id: str) -> dict[str, str]:
    out = subprocess.run(
        ["docker", "inspect", container_id], capture_output=True, text=True, check=True
    )
    raw: dict[str, Any] = json.loads(out.stdout)[0]
    return dict(e.split("=", 1) for e in raw["Config"]["Env"])


def test_gpu_whole_devices_close_together(node: SessionNode) -> None:
    email = node.user()["email"]
    pair = start(node, email, SLEEP, cpu=0.1, slots={"cuda.device": 2})
    running = node.wait_status(pair["id"], {"running"}, as_=email)
    assert {(a["device"], a["amount"]) for a in running["allocation"]} == {
        (GPU_B, 1.0),
        (GPU_C, 1.0),
    }
    env = _env(running["container_id"])
    assert set(env["NVIDIA_VISIBLE_DEVICES"].split(",")) == {GPU_B, GPU_C}
    assert "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE" not in env

    plain = start(node, email, SLEEP, cpu=0.1)
    assert (
        _env(node.wait_status(plain["id"], {"running"}, as_=email)["container_id"])[
            "NVIDIA_VISIBLE_DEVICES"
        ]
        == "void"
    )

    one = start(node, email, SLEEP, cpu=0.1, slots={"cuda.device": 1})
    assert [
        a["device"] for a in node.wait_status(one["id"], {"running"}, as_=email)["allocation"]
    ] == [GPU_A]
    more = start(node, email, SLEEP, cpu=0.1, slots={"cuda.device": 1})
    waiting = wait_verdict(node, email, more["id"])
    assert "1 cuda.device asked, 0 free" in waiting["verdict"], waiting

    for slots in ({"cuda.shares": 0.5}, {"cuda.device": 4}):
        error = refused(post(node, email, image=IMAGE, slots=slots), 400, "exceeds_capacity")
        assert error["details"]["resource"] == next(iter(slots)), error

    destroy(node, email, one["id"])
    assert [
        a["device"] for a in node.wait_status(more["id"], {"running"}, as_=email)["allocation"]
    ] == [GPU_A]
    for s in (pair, plain, more):
        destroy(node, email, s["id"])
