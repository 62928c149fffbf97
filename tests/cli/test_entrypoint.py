"""The installed ``vfd`` script as a real process: exit status, streams, ``--json``, and the
errors met before any request (daemon down, bad config file, bad usage)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from vfdcli import run_vfd, unique


@pytest.fixture
def empty_state() -> Iterator[Path]:
    """A state directory where no daemon runs (short path: it holds the socket name)."""
    with tempfile.TemporaryDirectory(dir="/tmp") as state:
        yield Path(state)


def test_entrypoint_success_prints_json_and_exits_0(vfd_bin: Path, vfd_daemon: Any) -> None:
    name = unique("proc")
    done = run_vfd(vfd_bin, "vfolder", "create", name, "--json", env=vfd_daemon.env)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert json.loads(done.stdout)["name"] == name

    done = run_vfd(vfd_bin, "vfolder", "list", env=vfd_daemon.env)
    assert done.returncode == 0 and name in done.stdout


def test_entrypoint_error_goes_to_stderr_with_code_and_exit_1(
    vfd_bin: Path, vfd_daemon: Any
) -> None:
    name = unique("missing")
    done = run_vfd(vfd_bin, "vfolder", "info", name, env=vfd_daemon.env)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("error: ") and done.stderr.endswith(" [vfolder_not_found]\n")
    assert name in done.stderr and "Traceback" not in done.stderr

    done = run_vfd(vfd_bin, "vfolder", "info", name, "--json", env=vfd_daemon.env)
    assert done.returncode == 1
    assert json.loads(done.stdout)["error"]["code"] == "vfolder_not_found"


def test_entrypoint_as_option_acts_for_the_user(vfd_bin: Path, vfd_daemon: Any) -> None:
    email = vfd_daemon.make_user()["email"]
    done = run_vfd(
        vfd_bin, "--as", email, "vfolder", "create", unique("mine"), "--json", env=vfd_daemon.env
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["owner"] == email


USAGE_ERRORS = [
    (("vfolder", "purge", "x"), "--confirm"),  # a missing option
    (("vfolder", "frobnicate"), "frobnicate"),  # an unknown command
    (("--bogus",), "--bogus"),  # an unknown option of the root command
    (("vfolder", "create"), "name"),  # a missing argument
    (("vfolder", "create", "x", "--usage-mode", "nope"), "nope"),  # a bad value
    (("admin", "quota", "set", "--bytes", "12Q"), "12Q"),  # a bad size
]


@pytest.mark.parametrize(
    ("args", "named"), USAGE_ERRORS, ids=[" ".join(a) for a, _ in USAGE_ERRORS]
)
def test_entrypoint_usage_error_is_an_error_line_and_exits_2(
    vfd_bin: Path, empty_state: Path, args: tuple[str, ...], named: str
) -> None:
    env = {"VFD_STATE_DIR": str(empty_state)}
    done = run_vfd(vfd_bin, *args, env=env)
    assert done.returncode == 2, (args, done.stderr)
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr  # no usage banner, no box: one line like other errors
    assert lines[0].startswith("error: ") and lines[0].endswith(" [usage_error]"), lines
    assert named in lines[0] and "--help`" in lines[0]

    done = run_vfd(vfd_bin, *args, "--json", env=env)
    assert done.returncode == 2, (args, done.stderr)
    error = json.loads(done.stdout)["error"]
    assert error["code"] == "usage_error" and named in error["message"]


def test_entrypoint_daemon_down_says_so(vfd_bin: Path, empty_state: Path) -> None:
    done = run_vfd(vfd_bin, "--state-dir", str(empty_state), "status", env={})
    assert done.returncode == 1
    socket = empty_state / "run" / "vfd.sock"
    assert done.stderr.startswith(f"error: vfd daemon is not running (socket {socket}: ")
    assert done.stderr.rstrip().endswith("[daemon_unavailable]")
    assert "Traceback" not in done.stderr and "ResourceWarning" not in done.stderr

    done = run_vfd(vfd_bin, "vfolder", "list", "--json", env={"VFD_STATE_DIR": str(empty_state)})
    assert done.returncode == 1
    assert json.loads(done.stdout)["error"]["code"] == "daemon_unavailable"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("default_uid = 'abc'\n", "default_uid"),
        ("no_such_key = 1\n", "no_such_key"),
        ("[hosts]\nlocal = 'relative/path'\n", "hosts.local"),
        ("[default_policy]\nmax_vfolder_count = -1\n", "default_policy.max_vfolder_count"),
    ],
)
def test_entrypoint_bad_config_names_key_and_file(
    vfd_bin: Path, empty_state: Path, text: str, key: str
) -> None:
    config = empty_state / "vfd.toml"
    config.write_text(text)
    done = run_vfd(vfd_bin, "vfolder", "list", env={"VFD_STATE_DIR": str(empty_state)})
    assert done.returncode == 1
    assert str(config) in done.stderr and key in done.stderr
    assert done.stderr.rstrip().endswith("[config_invalid]")
    assert "Traceback" not in done.stderr

    other = empty_state / "other.toml"
    other.write_text(text)
    done = run_vfd(vfd_bin, "--config", str(other), "status", "--json", env={})
    assert done.returncode == 1
    error = json.loads(done.stdout)["error"]
    assert error["code"] == "config_invalid" and error["details"]["key"] == key
    assert str(other) in error["message"]


def test_entrypoint_missing_config_file_is_named(vfd_bin: Path, empty_state: Path) -> None:
    missing = empty_state / "nope.toml"
    done = run_vfd(vfd_bin, "--config", str(missing), "vfolder", "list", env={})
    assert done.returncode == 1
    assert str(missing) in done.stderr and "[config_invalid]" in done.stderr
