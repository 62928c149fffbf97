"""``vfd admin scheduler list``: the schedulers of the daemon's plugins (GET /v1/plugins)."""

from __future__ import annotations

import json
from collections.abc import Callable

from vfd.plugins.hookspecs import hookimpl
from vfd.plugins.loading import PluginRecord
from vfd.plugins.testing import TestDaemon, vfd_register_plugin, vfd_test_daemon
from vfd.plugins.types import Decision, SchedulerSpec, Snapshot

__all__ = ["vfd_register_plugin", "vfd_test_daemon"]


class Nothing:
    def decide(self, snapshot: Snapshot) -> Decision:
        return Decision()


class NothingPlugin:
    @hookimpl
    def vfd_register_schedulers(self) -> list[SchedulerSpec]:
        return [SchedulerSpec("nothing", "places nothing", lambda options: Nothing())]


def test_scheduler_list_shows_builtins(vfd_test_daemon: TestDaemon) -> None:
    done = vfd_test_daemon.cli("admin", "scheduler", "list", "--json")
    assert done.returncode == 0, done.stderr
    listed = {s["name"]: s for s in json.loads(done.stdout)["schedulers"]}
    assert {"fifo", "lifo", "drf"} <= set(listed)
    assert listed["drf"]["plugin"] == "drf"
    assert listed["drf"]["description"] == (
        "dominant resource fairness (Ghodsi et al. 2011) between users"
    )
    done = vfd_test_daemon.cli("admin", "scheduler", "list")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["SCHEDULER", "PLUGIN", "DESCRIPTION"]
    assert any(line.split()[:2] == ["lifo", "lifo"] for line in lines)


def test_scheduler_list_shows_a_plugins_scheduler(
    vfd_test_daemon: TestDaemon, vfd_register_plugin: Callable[..., PluginRecord]
) -> None:
    vfd_register_plugin(NothingPlugin(), "nothing-plugin")
    done = vfd_test_daemon.cli("admin", "scheduler", "list", "--json")
    listed = {s["name"]: s for s in json.loads(done.stdout)["schedulers"]}
    assert listed["nothing"] == {
        "name": "nothing",
        "plugin": "nothing-plugin",
        "description": "places nothing",
    }
