"""The session API as the tests call it: create a session, destroy it, read its logs, and
check a refusal's status and code (``/v1/sessions``, docs/api.md "Sessions")."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from sessionnode import IMAGE, SessionNode

from vfd.sessions import frames

FINAL = {"terminated", "cancelled", "error"}
"""The statuses a session ends in."""


def post(node: SessionNode, email: str, **body: Any) -> httpx.Response:
    """``POST /v1/sessions`` of ``body`` as it is, as ``email``; the raw answer."""
    with node.http(email) as http:
        return http.post("/v1/sessions", json=body)


def start(node: SessionNode, email: str, command: list[str], **body: Any) -> dict[str, Any]:
    """``POST /v1/sessions`` of ``command`` in the test image; the new session's JSON."""
    answer = post(node, email, **{"image": IMAGE, "command": command, **body})
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def run_to_end(node: SessionNode, email: str, command: list[str], **body: Any) -> dict[str, Any]:
    """Start ``command`` and wait for its end; the final session."""
    made = start(node, email, command, **body)
    return node.wait_status(made["id"], FINAL, as_=email)


def run_sh(
    node: SessionNode, email: str, mounts: list[str], script: str
) -> tuple[dict[str, Any], str, str]:
    """Run ``sh -c script`` with ``mounts`` to its end (``terminated`` asserted); the final
    session, its stdout and its stderr."""
    session = start(node, email, ["sh", "-c", script], mounts=mounts)
    ended = node.wait_status(session["id"], FINAL, as_=email, timeout=120)
    out, err, _ = logs(node, email, session["id"])
    assert ended["status"] == "terminated", (ended, out, err)
    return ended, out.decode(), err.decode()


def destroy(node: SessionNode, email: str, ref: str, force: bool = True) -> dict[str, Any]:
    """``DELETE /v1/sessions/REF``; the session's JSON."""
    with node.http(email) as http:
        answer = http.delete(f"/v1/sessions/{ref}", params={"force": str(force).lower()})
    assert answer.status_code == 200, answer.text
    out: dict[str, Any] = answer.json()
    return out


def refused(answer: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert that ``answer`` is a refusal with ``status`` and ``code``; its ``error``."""
    assert answer.status_code == status, answer.text
    error: dict[str, Any] = answer.json()["error"]
    assert error["code"] == code, error
    return error


def read_frames(data: bytes) -> tuple[bytes, bytes, dict[str, Any] | None]:
    """(stdout, stderr, END payload) of a complete frame stream."""
    out, err, end = bytearray(), bytearray(), None
    decoder = frames.Decoder()
    for kind, payload in decoder.feed(data):
        if kind is frames.Kind.STDOUT:
            out += payload
        elif kind is frames.Kind.STDERR:
            err += payload
        elif kind is frames.Kind.END:
            end = json.loads(payload)
        else:
            raise AssertionError(f"error frame: {payload!r}")
    assert decoder.pending == 0, "the stream was cut"
    return bytes(out), bytes(err), end


def logs(node: SessionNode, email: str, ref: str) -> tuple[bytes, bytes, dict[str, Any] | None]:
    """``GET /v1/sessions/REF/logs``: the session's stdout, stderr and END payload."""
    with node.http(email) as http:
        answer = http.get(f"/v1/sessions/{ref}/logs")
    assert answer.status_code == 200, answer.text
    return read_frames(answer.content)


def wait_verdict(
    node: SessionNode, email: str, ref: str, *, field: str = "verdict", timeout: float = 30
) -> dict[str, Any]:
    """The pending session ``ref`` once the scheduler has stored why it waits (``field``:
    ``verdict``, the first failing reason, or ``verdicts``, the whole list)."""
    deadline = time.monotonic() + timeout
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        seen = node.session(ref, email)
        if seen[field]:
            assert seen["status"] == "pending", seen
            return seen
        time.sleep(0.1)
    pytest.fail(f"no {field} on session {ref} within {timeout}s: {seen}")
