"""The CLI's built-in API socket (:func:`vfd.cli.state.default_api_socket`, read without
importing :mod:`vfd.config`) is the one :func:`vfd.config.load_config` names, in every case
where it answers; where a config file or a ``VFD_*`` variable could change it, it leaves the
answer to the config."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from vfd.cli.state import CliState, default_api_socket
from vfd.config import load_config


@pytest.mark.parametrize(
    ("given", "in_env", "toml", "other"), list(itertools.product([False, True], repeat=4))
)
def test_default_socket_is_the_configs(
    tmp_path: Path, given: bool, in_env: bool, toml: bool, other: bool
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    if toml:
        (state / "vfd.toml").write_text(f'api_socket = "{tmp_path / "elsewhere.sock"}"\n')
    env = {"PATH": "/usr/bin"}
    if in_env:
        env["VFD_STATE_DIR"] = str(state)
    if other:
        env["VFD_API_SOCKET"] = str(tmp_path / "from-env.sock")
    state_dir = state if given else None
    quick = default_api_socket(None, state_dir, env)
    if state_dir is None and not in_env:
        # the system's own state directory: /etc/vfd/vfd.toml decides, as for the config
        expected = load_config(state_dir=None, env=env).api_socket
    else:
        expected = load_config(state_dir=state_dir, env=env).api_socket
    if (toml and (given or in_env)) or other:
        assert quick is None  # the config decides (and checks what it reads)
    else:
        assert quick == expected
        assert quick.is_absolute()


def test_default_socket_relative_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    quick = default_api_socket(None, Path("rel"), {})
    assert (
        quick
        == load_config(state_dir=Path("rel"), env={}).api_socket
        == tmp_path / "rel/run/vfd.sock"
    )


def test_config_file_given_is_read(tmp_path: Path) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text(f'api_socket = "{tmp_path / "x.sock"}"\n')
    assert default_api_socket(conf, None, {}) is None
    cli = CliState(config_file=conf)
    assert cli.api_socket() == tmp_path / "x.sock"


def test_cli_state_uses_the_config_once_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [k for k in os.environ if k.startswith("VFD_")]:
        monkeypatch.delenv(key)
    cli = CliState(state_dir=tmp_path)
    assert cli.api_socket() == tmp_path / "run" / "vfd.sock"
    assert cli.config().api_socket == cli.api_socket()
