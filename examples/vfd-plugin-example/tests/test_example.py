"""The example plugin through vfd's plugin manager, as the daemon calls it."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable

import pytest
from vfd_plugin_example import ExamplePlugin

from vfd.errors import ErrorCode, VfdError
from vfd.plugins.manager import Vetoed
from vfd.plugins.testing import PluginHarness, session_view

Make = Callable[..., PluginHarness]


def test_example_vetoes_listed_images(vfd_plugins: Make) -> None:
    hooks = vfd_plugins(
        ("example", ExamplePlugin()),
        sections={"example": {"deny_images": ["untrusted/*", "*:nightly"]}},
    )
    with pytest.raises(Vetoed) as caught:
        hooks.before_start(session_view(image="untrusted/miner:1"))
    assert caught.value.plugin == "example"
    assert caught.value.reason == (
        "image untrusted/miner:1 is not allowed here (matches 'untrusted/*')"
    )
    with pytest.raises(Vetoed):
        hooks.before_start(session_view(image="python:nightly"))
    hooks.before_start(session_view(image="python:3.12"))  # allowed


def test_example_allows_everything_unconfigured(vfd_plugins: Make) -> None:
    hooks = vfd_plugins(("example", ExamplePlugin()))
    hooks.before_start(session_view(image="untrusted/miner:1"))


def test_example_adds_env_to_every_container(vfd_plugins: Make) -> None:
    hooks = vfd_plugins(("example", ExamplePlugin()))
    [(name, contribution)] = hooks.container_spec(session_view())
    assert name == "example"
    assert dict(contribution.env) == {"EXAMPLE_PLUGIN": "1"}
    hooks = vfd_plugins(
        ("example", ExamplePlugin()), sections={"example": {"env": {"TEAM": "physics"}}}
    )
    [(_, contribution)] = hooks.container_spec(session_view())
    assert dict(contribution.env) == {"TEAM": "physics"}


def test_example_bad_config_fails_the_plugin(vfd_plugins: Make) -> None:
    hooks = vfd_plugins(
        ("example", ExamplePlugin()), sections={"example": {"deny_images": "untrusted/*"}}
    )
    record = hooks.record("example")
    assert record.error == (
        "vfd_configure failed: ValueError: [plugins.example] deny_images must be a list of "
        "glob patterns"
    )
    assert hooks.container_spec(session_view()) == []  # left out


def test_example_refuses_env_vfd_sets(vfd_plugins: Make) -> None:
    hooks = vfd_plugins(("example", ExamplePlugin()), sections={"example": {"env": {"VFD_X": "1"}}})
    assert "['VFD_X'] are set by vfd" in (hooks.record("example").error or "")


def test_example_works_beside_vfd_builtins(vfd_plugins: Make) -> None:
    hooks = vfd_plugins(("example", ExamplePlugin()), builtins=True)
    assert {r.name for r in hooks.plugins.records} == {"fifo", "example"}
    with pytest.raises(VfdError) as caught:
        hooks.plugins.scheduler("example")
    assert caught.value.code is ErrorCode.PLUGIN_NOT_FOUND


def test_example_entry_point_when_installed() -> None:
    found = [ep for ep in importlib.metadata.entry_points(group="vfd") if ep.name == "example"]
    if not found:
        pytest.skip("vfd-plugin-example is not installed (pip install .): entry point not checked")
    assert found[0].dist is not None
    assert found[0].dist.metadata["Name"] == "vfd-plugin-example"
    assert isinstance(found[0].load(), ExamplePlugin)
