"""Whether sessions run on this node, as ``vfd status`` (admins) and ``vfd up``'s start lines
say it: on with the node's name, or off with the reason and how to turn them on.

Docker is made unreachable by pointing ``[sessions] docker_url`` at a socket nobody serves,
so the "off" answers are checked on any machine; the "on" one needs the real docker engine
(it skips saying why, and fails in CI, where ``make test`` starts dockerd).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from test_up import Up
from vfdcli import Cli

sys.path.insert(0, str(Path(__file__).parents[1] / "sessions"))
from sessionnode import docker_missing

Factory = Callable[..., AbstractContextManager[Any]]
NO_DOCKER = {"sessions": {"docker_url": "unix://{state_dir}/no-docker.sock"}}


def _needs_docker() -> None:
    why = docker_missing()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"docker is required in CI: {why}")
        print(f"sessions-on test skipped: {why}")
        pytest.skip(why)


def test_status_sessions_off_says_why_and_how_to_turn_them_on(vfd_daemon_factory: Factory) -> None:
    with vfd_daemon_factory(settings=NO_DOCKER) as daemon:
        cli = Cli(daemon.env)
        sessions = cli.json("status")["sessions"]
        url = f"unix://{daemon.state_dir}/no-docker.sock"
        assert sessions["on"] is False
        assert sessions["enabled"] == "auto"
        assert sessions["reason"].startswith(f"docker is not answering at {url}")
        assert "apt-get install docker.io" in sessions["reason"]
        out = cli.ok("status")
        assert "sessions" in out and f"off: docker is not answering at {url}" in out
        user = daemon.make_user()["email"]
        assert "sessions" not in cli.json("status", as_=user)  # node-wide: admins only


def test_status_sessions_off_in_config_says_so(vfd_daemon_factory: Factory) -> None:
    with vfd_daemon_factory(settings={"sessions": {"enabled": "off"}}) as daemon:
        sessions = Cli(daemon.env).json("status")["sessions"]
        assert sessions["on"] is False and sessions["enabled"] == "off"
        assert 'enabled = "off"' in sessions["reason"]


def test_status_sessions_on_when_docker_answers(vfd_daemon_factory: Factory) -> None:
    _needs_docker()
    node = f"test-{secrets.token_hex(4)}"
    with vfd_daemon_factory(settings={"sessions": {"node": node}}) as daemon:
        cli = Cli(daemon.env)
        sessions = cli.json("status")["sessions"]
        assert sessions == {"on": True, "reason": None, "enabled": "auto", "node": node}
        assert f"on (node {node})" in cli.ok("status")


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A fresh state directory under /tmp holding a ``vfd.toml`` whose docker is not there."""
    parent = Path(tempfile.mkdtemp(prefix="vfdup-", dir="/tmp"))
    state = parent / "state"
    state.mkdir()
    (state / "vfd.toml").write_text(f'[sessions]\ndocker_url = "unix://{parent}/no-docker.sock"\n')
    yield state
    shutil.rmtree(parent, ignore_errors=True)


def test_up_start_lines_say_sessions_are_off_and_how_to_turn_them_on(
    vfd_bin: Path, state_dir: Path
) -> None:
    up = Up(vfd_bin, state_dir, "--no-mountd")
    try:
        up.wait_status()
        line = next(x for x in up.stdout.splitlines() if x.strip().startswith("sessions"))
        url = f"unix://{state_dir.parent}/no-docker.sock"
        assert line.split(None, 1)[1] == (
            f"off: docker is not answering at {url}: apt-get install docker.io; start dockerd "
            "(or set [sessions] docker_url); they start once docker answers, without a restart"
        )
        up.proc.send_signal(signal.SIGINT)
        assert up.wait_exit() == 0
    finally:
        up.stop()
