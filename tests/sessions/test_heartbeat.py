"""A node heartbeats only while its container runtime answers: one whose docker is down goes
dead (after three silent intervals), so the scheduling leader gives it nothing new."""

from __future__ import annotations

import time

from sessionnode import start_node, stop_node

CONFIG = """
[sessions]
docker_url = "unix:///run/vfd-test-no-docker-here.sock"
heartbeat_interval = 0.2
"""


def test_heartbeat_stops_while_docker_is_down() -> None:
    node = start_node(CONFIG)
    try:
        deadline = time.monotonic() + 30
        while True:
            [me] = [
                n
                for n in node.cli.json("admin", "node", "list")["nodes"]
                if n["id"] == node.node_name
            ]
            if not me["alive"]:
                break
            assert time.monotonic() < deadline, me
            time.sleep(0.2)
        assert me["heartbeat_age"] >= 0.6, me
        assert "not heartbeating while sessions cannot run here" in node.log.read_text()
    finally:
        stop_node(node)
