"""The example plugin through vfd's plugin manager, as the daemon calls it."""

from __future__ import annotations

import importlib.metadata
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from vfd_plugin_example import ExamplePlugin

from vfd.errors import ErrorCode, VfdError
from vfd.plugins import Agent, PendingSession, Snapshot
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
    assert {r.name for r in hooks.plugins.records} == {
        "cuda",
        "drf",
        "fifo",
        "lifo",
        "sftp",
        "filebrowser",
        "example",
    }
    assert set(hooks.plugins.schedulers) == {"drf", "fifo", "lifo", "sjf"}
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


def _snapshot(*pending: PendingSession, cpu: float = 2) -> Snapshot:
    return Snapshot(
        group="default",
        pending=pending,
        agents=(Agent("n1", "default", cpu, 16 * 2**30, 0.0, 0),),
        allocations={},
        running={},
        limits={},
        memo={},
        now=datetime(2026, 12, 1, tzinfo=UTC),
    )


def _pending(n: int, lifetime: float | None, cpu: float = 1) -> PendingSession:
    return PendingSession(
        id=uuid.UUID(int=n + 1),
        user_id=uuid.UUID(int=1000 + n),
        name=f"s{n}",
        created_at=datetime(2026, 12, 1, tzinfo=UTC) + timedelta(seconds=n),
        cpu=cpu,
        memory=2**30,
        lifetime=lifetime,
    )


def test_example_sjf_starts_the_shortest_lifetime_first(vfd_plugins: Make) -> None:
    """Through vfd's plugin manager, as the daemon builds it: shortest lifetime first, none
    last, ties by submit time."""
    hooks = vfd_plugins(("example", ExamplePlugin()))
    sjf = hooks.plugins.scheduler("sjf")
    snapshot = _snapshot(_pending(0, None), _pending(1, 3600), _pending(2, 60), _pending(3, 3600))
    decision = sjf.decide(snapshot)
    assert [p.session_id for p in decision.place] == [uuid.UUID(int=3), uuid.UUID(int=2)]
    assert [p.agent for p in decision.place] == ["n1", "n1"]
    assert set(decision.waiting) == {uuid.UUID(int=1), uuid.UUID(int=4)}
    verdicts = {v.name: v for v in decision.waiting[uuid.UUID(int=1)]}
    assert verdicts["queue"].reason == "number 4 by requested lifetime (no lifetime); not holding"
    assert not verdicts["fits_agent"].ok


def test_example_sjf_does_not_hold_the_line(vfd_plugins: Make) -> None:
    """A short session too big for any agent waits; the longer ones behind it start."""
    sjf = vfd_plugins(("example", ExamplePlugin())).plugins.scheduler("sjf")
    decision = sjf.decide(_snapshot(_pending(0, 10, cpu=8), _pending(1, 100)))
    assert [p.session_id for p in decision.place] == [uuid.UUID(int=2)]
    assert [v.name for v in decision.waiting[uuid.UUID(int=1)] if not v.ok] == ["fits_agent"]
