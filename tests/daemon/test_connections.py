"""The pieces of the per-connection limits that need no server: the per-peer count, the
canned refusal, and the rate-limited log (the server's behaviour: test_api_load.py)."""

from __future__ import annotations

import json
import logging

import h11
import pytest

from vfd.config import RequestLimits
from vfd.daemon.connections import ConnectionGuard, RateLimitedLog


def test_connections_guard_counts_per_peer() -> None:
    guard = ConnectionGuard(RequestLimits(peer_connections=2))
    assert guard.admit("uid 1000") and guard.admit("uid 1000")
    assert not guard.admit("uid 1000")
    assert guard.admit("uid 1001")  # another peer has its own count
    guard.release("uid 1000")
    assert guard.admit("uid 1000")
    for _ in range(3):
        guard.release("uid 1000")
    assert "uid 1000" not in guard.open  # nothing kept for a peer with no connection


def test_connections_refusal_is_a_whole_http_answer() -> None:
    guard = ConnectionGuard(RequestLimits(peer_connections=5, retry_after=7))
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/v1/whoami", headers=[("Host", "vfd")]))
    client.receive_data(guard.refusal("uid 1000"))
    response = client.next_event()
    assert isinstance(response, h11.Response) and response.status_code == 429
    headers = {k.decode(): v.decode() for k, v in response.headers}
    assert headers["retry-after"] == "7" and headers["connection"] == "close"
    data = client.next_event()
    assert isinstance(data, h11.Data)
    error = json.loads(data.data)["error"]
    assert error["code"] == "too_many_requests"
    assert error["details"] == {"limit": 5, "retry_after": 7}
    assert isinstance(client.next_event(), h11.EndOfMessage)


def test_connections_log_is_rate_limited_per_peer(caplog: pytest.LogCaptureFixture) -> None:
    log = RateLimitedLog(interval=3600)
    with caplog.at_level(logging.WARNING, logger="vfd.daemon.connections"):
        for _ in range(5):
            log.warning("uid 1", "cap", "refused %s", "uid 1")
        log.warning("uid 2", "cap", "refused %s", "uid 2")
        log.warning("uid 1", "head", "closed %s", "uid 1")
    assert [r.getMessage() for r in caplog.records] == [
        "refused uid 1",
        "refused uid 2",
        "closed uid 1",
    ]
    log.interval = 0  # the next one is due: it says how many were left out
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vfd.daemon.connections"):
        log.warning("uid 1", "cap", "refused %s", "uid 1")
    assert caplog.records[0].getMessage() == "refused uid 1 (4 more like it not logged)"
