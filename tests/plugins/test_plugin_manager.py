"""The plugin manager: loading from entry points (built-ins included), blocking before import,
load failures isolated and listed, per-plugin pending checks, scheduler clashes, the trace
switch, and how hooks are called (keywords, awaitables, isolation)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import sys
from pathlib import Path
from typing import Any

import pytest
from fakedist import make_dist

import vfd
from vfd.config import Config, load_config
from vfd.errors import ErrorCode, VfdError
from vfd.plugins import hookimpl
from vfd.plugins.manager import Plugins, build_manager
from vfd.plugins.testing import builtin_entry_points, folder_view, make_plugins

GOOD = """
from vfd.plugins import hookimpl

@hookimpl
def vfd_folder_created(folder):
    pass
"""


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(state_dir=tmp_path / "state", env={})


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory of fake installed distributions, importable in this process."""
    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    return path


def listed(plugins: Plugins, name: str) -> dict[str, Any]:
    for entry in plugins.listing()["plugins"]:
        if entry["name"] == name:
            found: dict[str, Any] = entry
            return found
    raise AssertionError(f"{name} not listed: {plugins.listing()}")


def test_manager_registers_builtins_through_entry_points(config: Config) -> None:
    plugins = build_manager(config)
    fifo = listed(plugins, "fifo")
    assert fifo["builtin"] is True
    assert fifo["distribution"] == "vfd"
    assert fifo["hooks"] == ["vfd_register_schedulers"]
    assert fifo["error"] is None
    assert [ep.name for ep in builtin_entry_points()] == [
        "cuda",
        "drf",
        "fifo",
        "filebrowser",
        "lifo",
        "sftp",
    ]
    assert [s["name"] for s in plugins.listing()["schedulers"]] == ["drf", "fifo", "lifo"]
    sftp = listed(plugins, "sftp")
    assert (sftp["builtin"], sftp["hooks"]) == (True, ["vfd_register_apps"])
    assert [(a["name"], a["plugin"]) for a in plugins.listing()["apps"]] == [
        ("filebrowser", "filebrowser"),
        ("sftp", "sftp"),
    ]


def test_manager_lists_third_party_distribution_and_version(config: Config, site: Path) -> None:
    eps = make_dist(site, "vfd-good", {"good": "mgr_good"}, {"mgr_good": GOOD}, version="2.5")
    plugins = build_manager(config, entry_points=eps)
    assert listed(plugins, "good") | {"hooks": None} == {
        "name": "good",
        "distribution": "vfd-good",
        "version": "2.5",
        "builtin": False,
        "hooks": None,
        "error": None,
        "calls_failed": 0,
        "last_failure": None,
    }
    assert listed(plugins, "good")["hooks"] == ["vfd_folder_created"]


def test_manager_import_failure_is_listed_and_others_load(config: Config, site: Path) -> None:
    eps = make_dist(
        site,
        "vfd-broken",
        {"broken": "mgr_broken", "fine": "mgr_fine"},
        {"mgr_broken": "raise RuntimeError('no database driver here')\n", "mgr_fine": GOOD},
    )
    plugins = build_manager(config, entry_points=eps)
    assert listed(plugins, "broken")["error"] == (
        "import failed: RuntimeError: no database driver here"
    )
    assert listed(plugins, "broken")["hooks"] == []
    assert listed(plugins, "fine")["error"] is None
    assert plugins.pm.get_plugin("broken") is None


def test_manager_blocks_by_name_before_import(config: Config, site: Path) -> None:
    eps = make_dist(
        site,
        "vfd-blocked",
        {"noisy": "mgr_noisy"},
        {"mgr_noisy": "raise SystemExit('imported although blocked')\n"},
    )
    eps += make_dist(site, "vfd-other-dist", {"other": "mgr_other"}, {"mgr_other": GOOD})
    config = dataclasses.replace(config, plugin_block=("noisy", "vfd-other-dist"))
    plugins = build_manager(config, entry_points=eps)
    assert plugins.blocked == ["noisy", "other"]
    assert plugins.listing()["plugins"] == []
    assert "mgr_noisy" not in sys.modules and "mgr_other" not in sys.modules


def test_manager_unknown_hook_fails_that_plugin_only(config: Config, site: Path) -> None:
    typo = """
    from vfd.plugins import hookimpl

    @hookimpl
    def vfd_sesion_started(session):
        pass
    """
    eps = make_dist(
        site, "vfd-typo", {"typo": "mgr_typo", "ok": "mgr_ok"}, {"mgr_typo": typo, "mgr_ok": GOOD}
    )
    plugins = build_manager(config, entry_points=eps)
    assert "unknown hook 'vfd_sesion_started'" in listed(plugins, "typo")["error"]
    assert plugins.pm.get_plugin("typo") is None
    plugins.pm.check_pending()  # what is left is consistent
    assert listed(plugins, "ok")["error"] is None


def test_manager_bad_signature_and_wrappers_are_load_errors(config: Config, site: Path) -> None:
    bad_arg = """
    from vfd.plugins import hookimpl

    @hookimpl
    def vfd_folder_created(folder, extra):
        pass
    """
    wrapper = """
    from vfd.plugins import hookimpl

    @hookimpl(wrapper=True)
    def vfd_folder_created(folder):
        return (yield)
    """
    eps = make_dist(
        site,
        "vfd-bad",
        {"badarg": "mgr_badarg", "wrap": "mgr_wrap"},
        {"mgr_badarg": bad_arg, "mgr_wrap": wrapper},
    )
    plugins = build_manager(config, entry_points=eps)
    assert listed(plugins, "badarg")["error"].startswith("cannot register:")
    assert "extra" in listed(plugins, "badarg")["error"]
    assert "hook wrappers are not supported" in listed(plugins, "wrap")["error"]


def test_manager_scheduler_clash_names_both_plugins(config: Config, site: Path) -> None:
    clash = """
    from vfd.plugins import hookimpl, SchedulerSpec
    from vfd.plugins.builtin.fifo import QueueScheduler

    @hookimpl
    def vfd_register_schedulers():
        return [SchedulerSpec("fifo", "mine", lambda options: QueueScheduler())]
    """
    eps = builtin_entry_points() + make_dist(
        site, "vfd-clash", {"myfifo": "mgr_clash"}, {"mgr_clash": clash}
    )
    with pytest.raises(VfdError) as caught:
        build_manager(config, entry_points=eps)
    assert caught.value.code is ErrorCode.CONFIG_INVALID
    assert "plugins fifo and myfifo both register a scheduler named 'fifo'" in str(caught.value)
    assert caught.value.details["plugins"] == ["fifo", "myfifo"]


def test_manager_malformed_registration_fails_that_plugin(config: Config, site: Path) -> None:
    malformed = """
    from vfd.plugins import hookimpl

    @hookimpl
    def vfd_register_schedulers():
        return "fifo"
    """
    eps = make_dist(site, "vfd-malformed", {"mal": "mgr_mal"}, {"mgr_mal": malformed})
    plugins = build_manager(config, entry_points=eps)
    assert "must return a list of SchedulerSpec, not str" in listed(plugins, "mal")["error"]
    assert plugins.schedulers == {}


class Configured:
    def __init__(self) -> None:
        self.sections: Any = None

    @hookimpl
    def vfd_configure(self, sections: Any) -> None:
        self.sections = sections


class BadConfig:
    @hookimpl
    async def vfd_configure(self, sections: Any) -> None:
        raise ValueError("deny_images must be a list")

    @hookimpl
    def vfd_folder_created(self, folder: Any) -> None:
        raise AssertionError("an unconfigured plugin was called")


def test_manager_configure_failure_unregisters_the_plugin() -> None:
    seen = Configured()
    plugins = make_plugins(("seen", seen), ("bad", BadConfig()), sections={"seen": {"k": 1}})
    asyncio.run(plugins.start())
    assert seen.sections == {"seen": {"k": 1}}
    bad = next(r for r in plugins.records if r.name == "bad")
    assert bad.error == "vfd_configure failed: ValueError: deny_images must be a list"
    assert bad.hooks == ()
    asyncio.run(plugins.notify("vfd_folder_created", folder=folder_view()))


class Raising:
    @hookimpl
    def vfd_folder_trashed(self, folder: Any) -> None:
        raise RuntimeError("webhook down")


class Recording:
    def __init__(self) -> None:
        self.calls: list[str] = []

    @hookimpl
    async def vfd_folder_trashed(self, folder: Any) -> None:
        await asyncio.sleep(0)
        self.calls.append(folder.name)


def test_manager_notification_failure_is_isolated_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recording = Recording()
    plugins = make_plugins(("raising", Raising()), ("recording", recording))
    asyncio.run(plugins.start())
    with caplog.at_level(logging.ERROR, logger="vfd.plugins.manager"):
        asyncio.run(plugins.notify("vfd_folder_trashed", folder=folder_view(name="f1")))
    assert recording.calls == ["f1"]
    entry = next(p for p in plugins.listing()["plugins"] if p["name"] == "raising")
    assert entry["calls_failed"] == 1
    assert entry["last_failure"]["hook"] == "vfd_folder_trashed"
    assert entry["last_failure"]["error"] == "RuntimeError: webhook down"
    assert "plugin raising failed in vfd_folder_trashed (ignored)" in caplog.text


def test_manager_trace_logs_every_call_with_plugin_and_duration(
    caplog: pytest.LogCaptureFixture,
) -> None:
    plugins = make_plugins(("raising", Raising()), ("recording", Recording()), trace=True)
    asyncio.run(plugins.start())
    with caplog.at_level(logging.INFO, logger="vfd.plugins.trace"):
        asyncio.run(plugins.notify("vfd_folder_trashed", folder=folder_view()))
    lines = [r.getMessage() for r in caplog.records if r.name == "vfd.plugins.trace"]
    assert len(lines) == 2, lines
    assert any(
        line.startswith("hook vfd_folder_trashed plugin recording: ") and line.endswith(" ms, ok")
        for line in lines
    )
    assert any(
        "plugin raising" in line and "raised RuntimeError: webhook down" in line for line in lines
    )


def test_manager_trace_off_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    plugins = make_plugins(("recording", Recording()))
    asyncio.run(plugins.start())
    with caplog.at_level(logging.DEBUG, logger="vfd.plugins.trace"):
        asyncio.run(plugins.notify("vfd_folder_trashed", folder=folder_view()))
    assert not [r for r in caplog.records if r.name == "vfd.plugins.trace"]


def test_manager_start_logs_one_line_per_plugin(
    config: Config, site: Path, caplog: pytest.LogCaptureFixture
) -> None:
    eps = builtin_entry_points() + make_dist(
        site,
        "vfd-mixed",
        {"broken": "mgr_broken2", "blocked": "mgr_blocked2"},
        {"mgr_broken2": "import no_such_module_here\n", "mgr_blocked2": GOOD},
    )
    config = dataclasses.replace(config, plugin_block=("blocked",))
    plugins = build_manager(config, entry_points=eps)
    with caplog.at_level(logging.INFO, logger="vfd.plugins.manager"):
        asyncio.run(plugins.start())
    lines = [r.getMessage() for r in caplog.records]
    # what the cuda accelerator found depends on the machine: one line, after the plugins
    assert lines.pop().startswith("accelerator cuda (plugin cuda): ")
    hooks = {
        "cuda": "vfd_container_spec, vfd_register_accelerators",
        "filebrowser": "vfd_register_apps",
        "sftp": "vfd_register_apps",
    }
    assert lines == [
        f"plugin {name} loaded (vfd {vfd.__version__}, built in; hooks: "
        f"{hooks.get(name, 'vfd_register_schedulers')})"
        for name in ("cuda", "drf", "fifo", "filebrowser", "lifo", "sftp")
    ] + [
        "plugin broken failed and is left out: import failed: "
        "ModuleNotFoundError: No module named 'no_such_module_here'",
        "plugin blocked blocked by [plugins] block: not imported",
    ]


def test_manager_scheduler_unknown_name_is_plugin_not_found() -> None:
    plugins = make_plugins(builtins=True)
    assert plugins.scheduler("fifo") is not None
    with pytest.raises(VfdError) as caught:
        plugins.scheduler("sjf")
    assert caught.value.code is ErrorCode.PLUGIN_NOT_FOUND
    assert "registered: drf, fifo, lifo" in caught.value.message


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("return AppSpec('ok', 'x', 'm', plan)", "must return a list of AppSpec, not AppSpec"),
        ("return [AppSpec('Bad Name', 'x', 'm', plan)]", "app name 'Bad Name': 1-32 lowercase"),
        ("return [AppSpec('a' * 33, 'x', 'm', plan)]", "app name 'aaaa"),
        ("return [AppSpec('ok', 'x', 'no such-module', plan)]", "is no module name"),
        ("return [AppSpec('ok', 'x', 'm', None)]", "app ok: plan is not callable"),
        ("return ['ok']", "vfd_register_apps returned 'ok': an AppSpec was expected"),
        ("return [AppSpec('ok', 'x', 'm', plan), AppSpec('ok', 'y', 'm', plan)]", "one name twice"),
    ],
)
def test_manager_malformed_app_registration_fails_the_plugin(
    config: Config, site: Path, body: str, error: str
) -> None:
    source = f"""
        from vfd.plugins import AppLaunch, AppSpec, hookimpl

        def plan(ctx):
            return AppLaunch()

        @hookimpl
        def vfd_register_apps():
            {body}
        """
    module = f"mgr_badapp_{secrets.token_hex(4)}"  # a module of its own for each case
    eps = make_dist(site, "vfd-badapp", {"badapp": module}, {module: source})
    plugins = build_manager(config, entry_points=eps)
    record = listed(plugins, "badapp")
    assert record["error"] is not None and error in record["error"], record["error"]
    assert record["hooks"] == []
    assert plugins.apps == {}


def test_manager_app_clash_names_both_plugins(config: Config, site: Path) -> None:
    source = """
        from vfd.plugins import AppLaunch, AppSpec, hookimpl

        @hookimpl
        def vfd_register_apps():
            return [AppSpec("sftp", "mine", "mgr_appclash", lambda ctx: AppLaunch())]
        """
    eps = builtin_entry_points() + make_dist(
        site, "vfd-appclash", {"mysftp": "mgr_appclash"}, {"mgr_appclash": source}
    )
    with pytest.raises(VfdError) as caught:
        build_manager(config, entry_points=eps)
    assert caught.value.code is ErrorCode.CONFIG_INVALID
    assert caught.value.message == (
        "plugins sftp and mysftp both register an app named 'sftp': block one of them in "
        'the config ([plugins] block = ["mysftp"])'
    )
    assert caught.value.details["plugins"] == ["sftp", "mysftp"]
    blocked = dataclasses.replace(config, plugin_block=("sftp",))
    plugins = build_manager(blocked, entry_points=eps)
    assert plugins.apps["sftp"][0] == "mysftp"
