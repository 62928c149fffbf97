"""The session API's create, list, show and destroy (``/v1/sessions``) on a real node: every
refusal with its code and nothing stored, names unique among live sessions, references by id,
prefix and name."""

from __future__ import annotations

import contextlib
import secrets
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sessionapi import destroy, post, refused, start
from sessionnode import SessionNode
from sqlmodel import Session, select

from vfd.store.db import make_engine
from vfd.store.models import ComputeSession, SessionStatus, User

SLEEP = ["sleep", "1000"]


def sessions_of(node: SessionNode, email: str) -> list[dict[str, Any]]:
    with node.http(email) as http:
        answer = http.get("/v1/sessions", params={"all": "true"})
        assert answer.status_code == 200, answer.text
        out: list[dict[str, Any]] = answer.json()["sessions"]
        return out


@pytest.fixture
def email(node: SessionNode) -> str:
    out: str = node.user()["email"]
    return out


def test_session_api_create_answers_a_pending_session_that_then_runs(
    node: SessionNode, image: str, email: str
) -> None:
    got = start(node, email, SLEEP, env={"GREETING": "hi"}, cpu=0.5)
    assert got["status"] == "pending"
    assert got["name"].startswith("busybox-") and len(got["name"]) == len("busybox-") + 4
    assert got["short_id"] == uuid.UUID(got["id"]).hex[:8]
    assert (got["user"], got["image"], got["command"]) == (email, image, SLEEP)
    assert (got["cpu"], got["memory"], got["env"]) == (0.5, 0, {"GREETING": "hi"})
    assert got["node"] == node.node_name and got["auto_remove"] is False
    assert [e["status"] for e in got["events"]] == ["pending"]
    running = node.wait_status(got["id"], {"running"}, as_=email)
    statuses = [e["status"] for e in running["events"]]
    assert statuses == ["pending", "scheduled", "preparing", "running"]
    placed = running["events"][1]["reason"]
    assert node.node_name in placed and "fifo" in placed
    assert running["verdict"] is None
    ended = destroy(node, email, got["short_id"])
    assert ended["status"] in ("terminating", "terminated")
    node.wait_status(got["id"], {"terminated"}, as_=email)


REFUSED_BODIES: list[tuple[dict[str, Any], int, str, str]] = [
    ({"image": ""}, 400, "invalid_argument", "image"),
    ({"image": "busy box"}, 400, "invalid_argument", "image"),
    ({"image": "x" * 513}, 400, "invalid_argument", "image"),
    ({"image": "../x"}, 400, "invalid_argument", "image"),
    ({"image": "Busybox"}, 400, "invalid_argument", "image"),
    ({"image": "a:b:c"}, 400, "invalid_argument", "image"),
    ({"image": "IMG", "command": ["a\x00b"]}, 400, "invalid_argument", "command"),
    ({"image": "IMG", "command": "sh"}, 400, "invalid_argument", "command"),
    ({"image": "IMG", "name": "-lead"}, 400, "invalid_name", "name"),
    ({"image": "IMG", "name": "a b"}, 400, "invalid_name", "name"),
    ({"image": "IMG", "name": "n" * 65}, 400, "invalid_name", "name"),
    ({"image": "IMG", "name": ""}, 400, "invalid_name", "name"),
    ({"image": "IMG", "env": {"1X": "v"}}, 400, "invalid_argument", "env"),
    ({"image": "IMG", "env": {"HOME": "/root"}}, 400, "invalid_argument", "env"),
    ({"image": "IMG", "env": {"VFD_SESSION_ID": "x"}}, 400, "invalid_argument", "env"),
    ({"image": "IMG", "env": {"K": 1}}, 400, "invalid_argument", "env.K"),
    ({"image": "IMG", "cpu": 0}, 400, "invalid_argument", "cpu"),
    ({"image": "IMG", "cpu": -1}, 400, "invalid_argument", "cpu"),
    ({"image": "IMG", "cpu": "1"}, 400, "invalid_argument", "cpu"),
    ({"image": "IMG", "memory": 2**20}, 400, "invalid_argument", "memory"),
    ({"image": "IMG", "memory": -1}, 400, "invalid_argument", "memory"),
    ({"image": "IMG", "memory": 2**64}, 400, "invalid_argument", "memory"),
    ({"image": "IMG", "auto_remove": 1}, 400, "invalid_argument", "auto_remove"),
    ({"image": "IMG", "gpu": 1}, 400, "invalid_argument", "gpu"),
    ({"command": ["true"]}, 400, "invalid_argument", "image"),
    ({"image": "IMG", "cpu": 10**6}, 400, "exceeds_capacity", ""),
    ({"image": "IMG", "memory": 2**62}, 400, "exceeds_capacity", ""),
    ({"image": "vfd-test/none-such:here"}, 404, "image_not_found", ""),
    ({"image": "IMG", "mounts": ["no-such-folder"]}, 404, "vfolder_not_found", ""),
    ({"image": "IMG", "mounts": ["FOLDER:/proc/x"]}, 400, "invalid_mount", ""),
    ({"image": "IMG", "mounts": ["FOLDER", "FOLDER"]}, 400, "invalid_mount", ""),
]


@pytest.mark.parametrize(("body", "status", "code", "field"), REFUSED_BODIES)
def test_session_api_create_refusals_store_nothing(
    node: SessionNode,
    image: str,
    email: str,
    body: dict[str, Any],
    status: int,
    code: str,
    field: str,
) -> None:
    folder = node.folder({"email": email})["name"] if "mounts" in body else ""
    sent = {
        k: (
            image
            if v == "IMG"
            else [m.replace("FOLDER", folder) for m in v]
            if k == "mounts"
            else v
        )
        for k, v in body.items()
    }
    details = refused(post(node, email, **sent), status, code)["details"]
    if field:
        assert details["field"] == field
    if code == "exceeds_capacity":
        assert details["resource"] == ("cpu" if "cpu" in body else "memory")
        assert details["node"] == node.node_name
    assert sessions_of(node, email) == []


def test_session_api_names_are_unique_among_live_sessions_only(
    node: SessionNode, image: str, email: str
) -> None:
    first = start(node, email, SLEEP, name="dup", cpu=0.1)
    answer = post(node, email, image=image, command=SLEEP, name="dup")
    details = refused(answer, 409, "session_exists")["details"]
    assert details["name"] == "dup"
    other = node.user()["email"]  # another user may use the name
    theirs = start(node, other, ["true"], name="dup", cpu=0.1)
    assert len(sessions_of(node, email)) == 1
    destroy(node, email, "dup")
    node.wait_status(first["id"], {"terminated", "cancelled"}, as_=email)
    again = start(node, email, ["true"], name="dup", cpu=0.1)
    assert again["id"] != first["id"]
    with node.http(email) as http:  # the name now means the live one
        assert http.get("/v1/sessions/dup").json()["id"] == again["id"]
    for who, ref in ((email, again["id"]), (other, theirs["id"])):
        node.wait_status(ref, {"terminated"}, as_=who)


def test_session_api_list_is_the_callers_newest_first_live_unless_all(
    node: SessionNode, image: str, email: str
) -> None:
    waited = start(node, email, ["true"], cpu=0.1)
    node.wait_status(waited["id"], {"terminated"}, as_=email)
    live = start(node, email, SLEEP, cpu=0.1)
    node.user()  # someone else's session is never listed
    with node.http(email) as http:
        shown = http.get("/v1/sessions").json()["sessions"]
        assert [s["id"] for s in shown] == [live["id"]]
        every = http.get("/v1/sessions", params={"all": "true"}).json()["sessions"]
        assert [s["id"] for s in every] == [live["id"], waited["id"]]
        assert "events" not in every[0]
        refused(http.get("/v1/sessions", params={"all": "maybe"}), 400, "invalid_argument")
    destroy(node, email, live["id"])


def _insert(node: SessionNode, email: str, ids: list[uuid.UUID]) -> None:
    """Ended sessions with chosen ids (to make two ids share a prefix), written to the
    node's store as a session of ``email`` would be."""
    engine = make_engine(node.config.database_url)
    try:
        with Session(engine) as session:
            user = session.exec(select(User).where(User.email == email)).one()
            for n, session_id in enumerate(ids):
                session.add(
                    ComputeSession(
                        id=session_id,
                        name=f"old{n}",
                        user_id=user.id,
                        uid=user.uid,
                        gid=user.gid,
                        node="elsewhere",
                        image="img",
                        status=SessionStatus.CANCELLED,
                    )
                )
            session.commit()
    finally:
        engine.dispose()


def test_session_api_refs_by_id_prefix_and_live_name(
    node: SessionNode, image: str, email: str
) -> None:
    head = secrets.token_hex(3)
    ids = [
        uuid.UUID(head + "a" + uuid.uuid4().hex[7:]),
        uuid.UUID(head + "b" + uuid.uuid4().hex[7:]),
    ]
    _insert(node, email, ids)
    with node.http(email) as http:
        details = refused(http.get(f"/v1/sessions/{head[:4]}"), 400, "ambiguous_id")["details"]
        assert sorted(details["candidates"]) == sorted(i.hex[:12] for i in ids)
        assert http.get(f"/v1/sessions/{head}a").json()["id"] == str(ids[0])
        assert http.get(f"/v1/sessions/{ids[1]}").json()["id"] == str(ids[1])
        assert http.get(f"/v1/sessions/{ids[1].hex.upper()}").json()["id"] == str(ids[1])
        refused(http.get(f"/v1/sessions/{head[:3]}"), 404, "session_not_found")  # too short
        refused(http.get("/v1/sessions/old0"), 404, "session_not_found")  # ended: no name
        refused(http.get(f"/v1/sessions/{uuid.uuid4()}"), 404, "session_not_found")
    other = node.user()["email"]  # someone else's session is not found by anyone else
    with node.http(other) as http:
        refused(http.get(f"/v1/sessions/{ids[0]}"), 404, "session_not_found")
        refused(http.delete(f"/v1/sessions/{ids[0]}"), 404, "session_not_found")
    live = start(node, email, SLEEP, name="by-name", cpu=0.1)
    with node.http(email) as http:
        assert http.get("/v1/sessions/by-name").json()["id"] == live["id"]
        assert http.get(f"/v1/sessions/{live['short_id']}").json()["id"] == live["id"]
    destroy(node, email, "by-name")


def test_session_api_destroy_of_an_ended_session_is_harmless(
    node: SessionNode, image: str, email: str
) -> None:
    got = start(node, email, ["true"], cpu=0.1)
    ended = node.wait_status(got["id"], {"terminated"}, as_=email)
    for _ in range(2):
        again = destroy(node, email, got["id"], force=False)
        assert again["status"] == "terminated"
        assert again["terminated_at"] == ended["terminated_at"]
    assert [e["status"] for e in node.session(got["id"], email)["events"]][-1] == "terminated"


@contextlib.contextmanager
def _sessions_off(
    vfd_daemon_factory: Callable[..., contextlib.AbstractContextManager[Any]],
) -> Iterator[httpx.Client]:
    with (
        vfd_daemon_factory(settings={"sessions": {"enabled": "off"}}) as daemon,
        daemon.client() as http,
    ):
        yield http


def test_session_api_runtime_unavailable_says_how_to_enable(
    vfd_daemon_factory: Callable[..., contextlib.AbstractContextManager[Any]],
) -> None:
    with _sessions_off(vfd_daemon_factory) as http:
        answer = http.post("/v1/sessions", json={"image": "vfd-test/busybox:latest"})
        error = refused(answer, 503, "runtime_unavailable")
        assert 'enabled = "off"' in error["message"]
        assert error["details"] is not None
        refused(http.post("/v1/sessions", json={"image": ""}), 400, "invalid_argument")
        assert http.get("/v1/sessions", params={"all": "true"}).json() == {"sessions": []}
