"""Storage-only sessions and their apps on a real node (``vfd up``, FUSE; no docker): made
without a container, listed with their kind and apps, held to the policy's number, not
counted as compute, ended by destroy with their app process reaped and its port freed; the
app hooks of a recording plugin, its veto included."""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session

sys.path.insert(0, str(Path(__file__).parent))
from appnode import AppNode, app_node_fixture, app_servers, port_free, proc_status, wait_gone

from vfd.daemon import capacity
from vfd.store.db import make_engine

PORTS = "31200-31299"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppNode]:
    yield from app_node_fixture(tmp_path_factory, f'[apps]\nports = "{PORTS}"\n')


@pytest.fixture
def user(node: AppNode) -> dict[str, Any]:
    return node.user()


def storage(node: AppNode, user: dict[str, Any], *mounts: str, **extra: Any) -> Any:
    return node.post("/v1/sessions/storage", user["email"], {"mounts": list(mounts), **extra})


def test_app_core_storage_session_runs_its_app_as_the_user(
    node: AppNode, user: dict[str, Any]
) -> None:
    folder = node.folder(user)
    made = storage(node, user, folder["name"])
    assert made.status_code == 201, made.text
    body = made.json()
    assert (body["kind"], body["status"], body["image"], body["cpu"]) == (
        "storage",
        "running",
        "",
        0.0,
    )
    [app] = body["apps"]
    assert (app["name"], app["kind"], app["status"]) == ("sftp", "process", "running")
    low, high = (int(p) for p in PORTS.split("-"))
    assert low <= app["port"] <= high
    assert app["endpoint"].endswith(f":{app['port']}")
    status = proc_status(app["pid"])
    uid = str(user["uid"])
    assert status["Uid"].split() == [uid] * 4 and status["Gid"].split()[0] == uid
    assert status["NoNewPrivs"] == "1" and status["CapEff"] == "0000000000000000"
    assert app["pid"] in app_servers(node, "vfd.apps.sftpd")
    listed = node.get("/v1/sessions", user["email"]).json()["sessions"]
    assert [(s["id"], s["kind"]) for s in listed] == [(body["id"], "storage")]

    gone = node.delete(f"/v1/sessions/{body['id']}", user["email"])
    assert gone.status_code == 200, gone.text
    ended = gone.json()
    assert ended["status"] == "terminated", ended
    assert ended["apps"][0]["status"] == "stopped"
    wait_gone(app["pid"])
    assert port_free(app["port"])
    assert app_servers(node, "vfd.apps.sftpd") == []


def test_app_core_storage_sessions_are_not_compute(node: AppNode, user: dict[str, Any]) -> None:
    folder = node.folder(user)
    made = storage(node, user, folder["name"]).json()
    engine = make_engine(node.config.database_url)
    try:
        with Session(engine) as session:
            held = capacity.held(session)
    finally:
        engine.dispose()
    assert user["id"] not in {str(k) for k in held.count}
    node.delete(f"/v1/sessions/{made['id']}", user["email"])


def test_app_core_storage_sessions_limited_per_user(node: AppNode, user: dict[str, Any]) -> None:
    folder = node.folder(user)
    ids = []
    for _ in range(2):
        made = storage(node, user, folder["name"])
        assert made.status_code == 201, made.text
        ids.append(made.json()["id"])
    third = storage(node, user, folder["name"])
    assert third.status_code == 403, third.text
    error = third.json()["error"]
    assert (error["code"], error["details"]["limit"], error["details"]["allowed"]) == (
        "policy_violation",
        "max_storage_sessions",
        2,
    )
    listed = node.get("/v1/sessions?all=true", user["email"]).json()["sessions"]
    assert sorted(s["id"] for s in listed) == sorted(ids)  # nothing of the third stored
    for ref in ids:
        node.delete(f"/v1/sessions/{ref}", user["email"])
    again = storage(node, user, folder["name"])
    assert again.status_code == 201  # ended ones do not count
    node.delete(f"/v1/sessions/{again.json()['id']}", user["email"])


def test_app_core_storage_refusals_store_nothing(node: AppNode, user: dict[str, Any]) -> None:
    for mounts, code in (
        ([], "invalid_argument"),
        (["no-such-folder"], "vfolder_not_found"),
        (["a:b:c:d"], "invalid_mount"),
    ):
        answer = storage(node, user, *mounts)
        assert answer.json()["error"]["code"] == code, answer.text
    unknown = storage(node, user, node.folder(user)["name"], app="telnet")
    assert unknown.json()["error"]["code"] == "app_not_found"
    assert node.get("/v1/sessions?all=true", user["email"]).json()["sessions"] == []


def test_hook_vfd_app_before_launch(node: AppNode, user: dict[str, Any]) -> None:
    folder = node.folder(user)
    servers = app_servers(node, "vfd.apps.sftpd")
    refused = storage(node, user, folder["name"], name="no-sftp")
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["code"] == "app_rejected"
    assert error["details"] == {
        "plugin": "apprec",
        "reason": "no sftp for sessions named no-*",
        "app": "sftp",
    }
    [ended] = node.get("/v1/sessions?all=true", user["email"]).json()["sessions"]
    assert (ended["status"], ended["status_plugin"], ended["apps"]) == ("cancelled", "apprec", [])
    seen = [h for h in node.hooks() if h["session"] == "no-sftp"]
    assert [(h["hook"], h["status"], h["session_status"], h["kind"]) for h in seen] == [
        ("before_launch", "starting", "preparing", "storage")
    ]
    assert app_servers(node, "vfd.apps.sftpd") == servers


def test_hook_vfd_app_launched(node: AppNode, user: dict[str, Any]) -> None:
    folder = node.folder(user)
    made = storage(node, user, folder["name"], name="launch-me").json()
    app = made["apps"][0]
    seen = [h for h in node.hooks() if h["session"] == "launch-me"]
    assert [(h["hook"], h["status"]) for h in seen] == [
        ("before_launch", "starting"),
        ("launched", "running"),
    ]
    assert (seen[1]["port"], seen[1]["pid"], seen[1]["endpoint"]) == (
        app["port"],
        app["pid"],
        app["endpoint"],
    )
    node.delete(f"/v1/sessions/{made['id']}", user["email"])


def test_hook_vfd_app_stopped(node: AppNode, user: dict[str, Any]) -> None:
    folder = node.folder(user)
    made = storage(node, user, folder["name"], name="stop-me").json()
    node.delete(f"/v1/sessions/{made['id']}", user["email"])
    # exactly once: the destroy and the app's follower both see it end; one records it
    seen = node.settled_hooks("stop-me", "stopped")
    assert len(seen) == 1, seen
    assert seen[0]["status"] == "stopped"
    assert seen[0]["reason"] == "its session was destroyed by root@local"  # the tests act as root


def test_app_core_storage_destroyed_while_its_app_starts(
    node: AppNode, user: dict[str, Any]
) -> None:
    """A destroy that comes while the app server starts ends the session ``cancelled`` with
    its reason, whether the launch or the destroy ends it; never ``error``."""
    folder = node.folder(user)
    email = user["email"]
    outcomes = []
    for attempt in range(6):
        name = f"racy-{attempt}-{secrets.token_hex(2)}"
        with ThreadPoolExecutor(1) as pool:
            made = pool.submit(storage, node, user, folder["name"], name=name)
            deadline = time.monotonic() + 30
            seen: dict[str, Any] = {}
            while time.monotonic() < deadline and not made.done():
                got = node.get(f"/v1/sessions/{name}", email)
                if got.status_code == 200:
                    seen = got.json()
                    if any(a["status"] == "starting" for a in seen["apps"]):
                        break
                time.sleep(0.005)
            assert seen, f"session {name} never showed"
            gone = node.delete(f"/v1/sessions/{seen['id']}", email)
            assert gone.status_code == 200, gone.text
            answer = made.result(timeout=60)
        ended = node.wait_session(seen["id"], email, {"cancelled", "terminated", "error"})
        outcomes.append(ended["status"])
        if ended["status"] == "cancelled":
            assert ended["status_reason"] == "destroyed by root@local while its app started"
            # the launch that lost its server says why (not a failure of the app)
            if answer.status_code != 201:
                assert answer.status_code == 409, answer.text
                assert answer.json()["error"]["code"] == "session_not_running", answer.text
        else:  # its app served before the destroy came: an ordinary destroy
            assert ended["status"] == "terminated", ended
            assert answer.status_code == 201, answer.text
        for app in ended["apps"]:
            why = (app["status"], app["status_reason"])
            assert why == ("stopped", "its session was destroyed by root@local"), app
            if app["pid"] is not None:
                wait_gone(app["pid"])
        # an app that served is told stopped, once; one that never served is not
        launched = node.settled_hooks(name, "before_launch", settle=0.5)
        if [h for h in node.hooks() if h["session"] == name and h["hook"] == "launched"]:
            assert len(node.settled_hooks(name, "stopped")) == 1
        called = [h["hook"] for h in node.hooks() if h["session"] == name]
        assert called in (["before_launch"], ["before_launch", "launched", "stopped"]), called
        assert len(launched) == 1
    assert app_servers(node, "vfd.apps.sftpd") == []
    assert "cancelled" in outcomes, outcomes  # the window was hit at least once


def test_app_core_storage_root_is_refused_before_anything_is_made(node: AppNode) -> None:
    """App servers never run as root: root's own ``vfd vfolder sftp`` and ``web`` are refused
    with a plain reason and a stable code, and no session, app or server is left behind."""
    folder = node.cli.json("vfolder", "create", f"rootf-{secrets.token_hex(3)}")
    before = app_servers(node, "vfd.apps.sftpd") + app_servers(node, "vfd.apps.filebrowser")
    for command in ("sftp", "web"):
        error = node.cli.fails("vfolder", command, folder["name"], code="permission_denied")
        assert "never run as root" in error["message"], error
        assert error["details"]["reason"] == "root", error
    with node.http() as http:
        assert http.get("/v1/sessions", params={"all": "true"}).json()["sessions"] == []
        answer = http.post("/v1/sessions/storage", json={"mounts": [folder["name"]]})
        assert answer.status_code == 403, answer.text
        assert http.get("/v1/sessions", params={"all": "true"}).json()["sessions"] == []
    after = app_servers(node, "vfd.apps.sftpd") + app_servers(node, "vfd.apps.filebrowser")
    assert after == before
