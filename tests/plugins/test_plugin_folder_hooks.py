"""The folder notifications, through a real daemon (``vfd.plugins.testing``'s in-process one):
a plugin registered for the test sees each folder change driven through the API, after it
is committed, and a plugin that raises changes nothing for the user."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

import pytest

from vfd.plugins import FolderView, hookimpl
from vfd.plugins.loading import PluginRecord
from vfd.plugins.testing import TestDaemon


class FolderRecorder:
    """Remembers every folder notification (hook name, folder)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, FolderView]] = []

    @hookimpl
    def vfd_folder_created(self, folder: FolderView) -> None:
        self.seen.append(("created", folder))

    @hookimpl
    async def vfd_folder_trashed(self, folder: FolderView) -> None:
        self.seen.append(("trashed", folder))

    @hookimpl
    def vfd_folder_restored(self, folder: FolderView) -> None:
        self.seen.append(("restored", folder))

    @hookimpl
    def vfd_folder_purged(self, folder: FolderView) -> None:
        self.seen.append(("purged", folder))

    def wait_for(self, event: str, name: str, timeout: float = 10) -> FolderView:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for seen, folder in self.seen:
                if seen == event and folder.name == name:
                    return folder
            time.sleep(0.02)
        pytest.fail(f"no {event} notification for {name}: {self.seen}")


class Exploding:
    @hookimpl
    def vfd_folder_created(self, folder: FolderView) -> None:
        raise RuntimeError("the webhook is down")


Register = Callable[..., PluginRecord]


def _user_folder(daemon: TestDaemon, recorder: FolderRecorder) -> tuple[dict[str, Any], str]:
    user = daemon.user(uid=21000 + secrets.randbelow(1000))
    name = f"f-{secrets.token_hex(3)}"
    with daemon.http(as_=user["email"]) as http:
        answer = http.post("/v1/vfolders", json={"name": name})
        assert answer.status_code == 201, answer.text
    recorder.wait_for("created", name)
    return user, name


def test_hook_vfd_folder_created(vfd_test_daemon: TestDaemon, vfd_register_plugin: Register):
    recorder = FolderRecorder()
    vfd_register_plugin(recorder, name="recorder")
    user, name = _user_folder(vfd_test_daemon, recorder)
    folder = recorder.wait_for("created", name)
    with vfd_test_daemon.http(as_=user["email"]) as http:
        shown = http.get(f"/v1/vfolders/{name}").json()
    assert folder.id.hex == shown["id"].replace("-", "")
    assert (folder.host, folder.ownership, folder.status) == ("local", "user", "ready")
    assert folder.owner_id.hex == user["id"].replace("-", "")
    assert folder.usage_mode == "general"


def test_hook_vfd_folder_trashed(vfd_test_daemon: TestDaemon, vfd_register_plugin: Register):
    recorder = FolderRecorder()
    vfd_register_plugin(recorder, name="recorder")
    user, name = _user_folder(vfd_test_daemon, recorder)
    with vfd_test_daemon.http(as_=user["email"]) as http:
        assert http.delete(f"/v1/vfolders/{name}").status_code == 200
    assert recorder.wait_for("trashed", name).status == "delete-pending"


def test_hook_vfd_folder_restored(vfd_test_daemon: TestDaemon, vfd_register_plugin: Register):
    recorder = FolderRecorder()
    vfd_register_plugin(recorder, name="recorder")
    user, name = _user_folder(vfd_test_daemon, recorder)
    with vfd_test_daemon.http(as_=user["email"]) as http:
        assert http.delete(f"/v1/vfolders/{name}").status_code == 200
        assert http.post(f"/v1/vfolders/{name}/restore").status_code == 200
    assert recorder.wait_for("restored", name).status == "ready"
    assert [event for event, _ in recorder.seen] == ["created", "trashed", "restored"]


def test_hook_vfd_folder_purged(vfd_test_daemon: TestDaemon, vfd_register_plugin: Register):
    recorder = FolderRecorder()
    vfd_register_plugin(recorder, name="recorder")
    user, name = _user_folder(vfd_test_daemon, recorder)
    with vfd_test_daemon.http(as_=user["email"]) as http:
        assert http.delete(f"/v1/vfolders/{name}").status_code == 200
        purged = http.post(f"/v1/vfolders/{name}/purge", json={"confirm": name})
        assert purged.status_code == 200, purged.text
    assert recorder.wait_for("purged", name).status == "delete-complete"


def test_folder_hooks_raising_plugin_is_isolated(
    vfd_test_daemon: TestDaemon, vfd_register_plugin: Register
) -> None:
    vfd_register_plugin(Exploding(), name="exploding")
    recorder = FolderRecorder()
    vfd_register_plugin(recorder, name="recorder")
    _user_folder(vfd_test_daemon, recorder)  # created, answered 201
    vfd_test_daemon.settle()
    with vfd_test_daemon.http() as http:
        listed = {p["name"]: p for p in http.get("/v1/plugins").json()["plugins"]}
    assert listed["exploding"]["calls_failed"] == 1
    assert listed["exploding"]["last_failure"]["hook"] == "vfd_folder_created"
    assert listed["exploding"]["last_failure"]["error"] == "RuntimeError: the webhook is down"
    assert listed["exploding"]["error"] is None


def test_register_plugin_lasts_one_test(vfd_test_daemon: TestDaemon) -> None:
    with vfd_test_daemon.http() as http:
        names = [p["name"] for p in http.get("/v1/plugins").json()["plugins"]]
    assert names == ["cuda", "drf", "fifo", "filebrowser", "lifo", "sftp"]
