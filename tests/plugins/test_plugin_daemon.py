"""Plugins in a real ``vfd daemon`` process, installed as distributions on its path: one that
fails to import and one that raises in a notification are isolated and listed by
``vfd plugins``, the daemon goes on serving; ``[plugins.NAME]`` sections reach
``vfd_configure``; registered schedulers are listed; blocked plugins are never imported;
the trace switch logs hook calls."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fakedist import make_dist

SITE_PLUGINS = {
    "broken": "vfdt_broken",
    "raiser": "vfdt_raiser",
    "cfg": "vfdt_cfg",
    "newest": "vfdt_newest",
    "blocked": "vfdt_blocked",
}
MODULES = {
    "vfdt_broken": "import vfdt_no_such_dependency\n",
    "vfdt_raiser": """
        from vfd.plugins import hookimpl

        @hookimpl
        async def vfd_folder_created(folder):
            raise RuntimeError(f"cannot announce {folder.name}")
        """,
    "vfdt_cfg": """
        import json
        from pathlib import Path
        from vfd.plugins import hookimpl

        @hookimpl
        def vfd_configure(sections):
            mine = sections["cfg"]
            Path(mine["out"]).write_text(json.dumps({k: dict(v) for k, v in sections.items()}))
        """,
    "vfdt_newest": """
        from vfd.plugins import hookimpl, SchedulerSpec, Decision, Placement

        class Newest:
            def __init__(self, options):
                self.options = dict(options)

            def decide(self, snapshot):
                agent = snapshot.agents[0].id
                return Decision(
                    place=tuple(Placement(s.id, agent) for s in reversed(snapshot.pending))
                )

        @hookimpl
        def vfd_register_schedulers():
            return [SchedulerSpec("newest", "last come, first served", Newest)]
        """,
    "vfdt_blocked": """
        from pathlib import Path
        Path(__file__).with_name("vfdt_blocked.imported").write_text("imported")
        """,
}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("site")
    make_dist(path, "vfd-test-plugins", SITE_PLUGINS, MODULES, version="0.3")
    return path


def root_conftest(config: pytest.Config) -> Any:
    """tests/conftest.py as pytest loaded it (its ``run_daemon`` starts a daemon process)."""
    path = str(Path(__file__).parents[1] / "conftest.py")
    for plugin in config.pluginmanager.get_plugins():
        if getattr(plugin, "__file__", None) == path:
            return plugin
    raise LookupError(path)


@pytest.fixture(scope="module")
def daemon(
    site: Path,
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    pytestconfig: pytest.Config,
) -> Iterator[Any]:
    run_daemon = root_conftest(pytestconfig).run_daemon
    out = tmp_path_factory.mktemp("cfg") / "sections.json"
    settings = {
        "plugins": {"block": ["blocked"], "trace": True},
        "plugins.cfg": {"out": str(out), "level": 3},
    }
    with run_daemon(database_url, settings=settings, env={"PYTHONPATH": str(site)}) as running:
        running.sections_file = out
        yield running


def vfd(daemon: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VFD_")}
    return subprocess.run(
        [str(Path(sys.executable).parent / "vfd"), *args],
        capture_output=True,
        text=True,
        env={**env, **daemon.env},
        timeout=60,
    )


def listing(daemon: Any) -> dict[str, Any]:
    done = vfd(daemon, "plugins", "--json")
    assert done.returncode == 0, done.stderr
    out: dict[str, Any] = json.loads(done.stdout)
    return out


def by_name(listed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in listed["plugins"]}


def poll(check: Callable[[], Any], timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def test_plugins_import_failure_is_listed_and_daemon_serves(daemon: Any) -> None:
    listed = by_name(listing(daemon))
    broken = listed["broken"]
    assert broken["distribution"] == "vfd-test-plugins"
    assert broken["version"] == "0.3"
    assert broken["builtin"] is False
    assert broken["hooks"] == []
    assert broken["error"] == (
        "import failed: ModuleNotFoundError: No module named 'vfdt_no_such_dependency'"
    )
    assert listed["fifo"]["builtin"] is True and listed["fifo"]["error"] is None
    assert daemon.http.get("/v1/status").status_code == 200
    assert "plugin broken failed and is left out: import failed" in daemon.log()


def test_plugins_table_shows_failure_and_blocked(daemon: Any) -> None:
    done = vfd(daemon, "plugins")
    assert done.returncode == 0, done.stderr
    plugin_table, scheduler_table = done.stdout.split("\n\n")[:2]
    rows = {line.split()[0]: line.split() for line in plugin_table.splitlines()}
    assert rows["broken"][1:3] == ["vfd-test-plugins", "0.3"]
    assert rows["broken"][-1] == "FAILED"
    assert rows["fifo"][-1] == "loaded"
    assert re.search(r"^newest +newest +last come, first served", scheduler_table, re.M)
    assert (
        "broken: left out: import failed: ModuleNotFoundError: No module named "
        "'vfdt_no_such_dependency'" in done.stdout
    )
    assert "blocked ([plugins] block, not imported): blocked" in done.stdout


def test_plugins_raising_notification_is_isolated_and_listed(daemon: Any) -> None:
    user = daemon.make_user()
    name = f"f-{secrets.token_hex(3)}"
    created = daemon.as_user(user["email"]).post("/v1/vfolders", json={"name": name})
    assert created.status_code == 201, created.text

    def failed() -> dict[str, Any] | None:
        raiser = by_name(listing(daemon))["raiser"]
        return raiser if raiser["calls_failed"] else None

    raiser = poll(failed)
    assert raiser, "the failed notification was not counted"
    assert raiser["error"] is None
    assert raiser["last_failure"]["hook"] == "vfd_folder_created"
    assert raiser["last_failure"]["error"] == f"RuntimeError: cannot announce {name}"
    assert "plugin raiser failed in vfd_folder_created (ignored)" in daemon.log()
    again = daemon.as_user(user["email"]).get(f"/v1/vfolders/{name}")
    assert again.status_code == 200


def test_hook_vfd_configure(daemon: Any) -> None:
    sections = json.loads(daemon.sections_file.read_text())
    assert sections == {"cfg": {"out": str(daemon.sections_file), "level": 3}}
    assert by_name(listing(daemon))["cfg"]["hooks"] == ["vfd_configure"]


def test_hook_vfd_register_schedulers(daemon: Any) -> None:
    listed = listing(daemon)
    assert {"name": "newest", "plugin": "newest", "description": "last come, first served"} in (
        listed["schedulers"]
    )
    assert by_name(listed)["newest"]["hooks"] == ["vfd_register_schedulers"]


def test_plugins_blocked_is_never_imported(daemon: Any, site: Path) -> None:
    listed = listing(daemon)
    assert listed["blocked"] == ["blocked"]
    assert "blocked" not in by_name(listed)
    assert not (site / "vfdt_blocked.imported").exists()
    assert "plugin blocked blocked by [plugins] block: not imported" in daemon.log()


def test_plugins_trace_logs_hook_calls(daemon: Any) -> None:
    user = daemon.make_user()
    created = daemon.as_user(user["email"]).post("/v1/vfolders", json={"name": "traced"})
    assert created.status_code == 201, created.text
    wanted = "hook vfd_folder_created plugin raiser: "
    assert poll(lambda: wanted in daemon.log()), daemon.log()[-3000:]
    line = next(x for x in daemon.log().splitlines() if wanted in x and "traced" in x)
    assert "ms, raised RuntimeError: cannot announce traced" in line
    assert "hook vfd_configure plugin cfg: " in daemon.log()
    assert "hook vfd_register_schedulers plugin newest: " in daemon.log()


def test_plugins_scheduler_clash_stops_the_daemon(
    database_url: str, tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    run_daemon = root_conftest(pytestconfig).run_daemon
    clash = tmp_path / "clash"
    make_dist(
        clash,
        "vfd-clash",
        {"otherfifo": "vfdt_clash"},
        {
            "vfdt_clash": """
            from vfd.plugins import hookimpl, SchedulerSpec

            @hookimpl
            def vfd_register_schedulers():
                return [SchedulerSpec("fifo", "another fifo", lambda options: None)]
            """
        },
    )
    with run_daemon(database_url, env={"PYTHONPATH": str(clash)}, wait=False) as running:
        with contextlib.suppress(subprocess.TimeoutExpired):
            running.process.wait(60)
        assert running.process.returncode not in (None, 0), running.log()
        log = running.log()
        assert (
            "plugins fifo and otherfifo both register a scheduler named 'fifo'" in log
            or "plugins otherfifo and fifo both register a scheduler named 'fifo'" in log
        ), log


def test_plugins_app_clash_stops_the_daemon(
    database_url: str, tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    run_daemon = root_conftest(pytestconfig).run_daemon
    clash = tmp_path / "appclash"
    make_dist(
        clash,
        "vfd-appclash",
        {"otherweb": "vfdt_appclash"},
        {
            "vfdt_appclash": """
            from vfd.plugins import AppLaunch, AppSpec, hookimpl

            @hookimpl
            def vfd_register_apps():
                return [AppSpec("filebrowser", "another one", "vfdt_appclash",
                                lambda ctx: AppLaunch())]
            """
        },
    )
    with run_daemon(database_url, env={"PYTHONPATH": str(clash)}, wait=False) as running:
        with contextlib.suppress(subprocess.TimeoutExpired):
            running.process.wait(60)
        assert running.process.returncode not in (None, 0), running.log()
        log = running.log()
        assert (
            "plugins filebrowser and otherweb both register an app named 'filebrowser'" in log
            or "plugins otherweb and filebrowser both register an app named 'filebrowser'" in log
        ), log
