"""Destroying a running session from several places at once (docs/sessions.md, "vfd session
destroy"): ``vfd run``'s Ctrl-C and a second, forcing one, or two terminals. Every request is
answered with the session, none with ``invalid_status`` from losing the race to the other."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
from sessionapi import FINAL, start
from sessionnode import SessionNode


def test_session_destroy_concurrent_destroys_all_answer(node: SessionNode, image: str) -> None:
    e = node.user()["email"]
    for _ in range(3):  # the race is between reading the status and moving it: try a few
        made = start(node, e, ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"])
        node.wait_status(made["id"], {"running"}, as_=e)

        def destroy(force: bool, ref: str = made["id"]) -> httpx.Response:
            with node.http(e) as http:
                return http.delete(f"/v1/sessions/{ref}", params={"force": str(force).lower()})

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(destroy, [False, True] * 4))
        assert [a.status_code for a in answers] == [200] * 8, [a.text for a in answers]
        ended = node.wait_status(made["id"], FINAL, as_=e, timeout=60)
        assert ended["exit_code"] == 137, ended  # a forcing request killed it
