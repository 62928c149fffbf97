"""``scripts/start-docker.sh``: what ``make run`` and ``make test`` use to make the docker
engine answer before sessions run.

The script is run for real; the ``docker`` and ``dockerd`` it finds are small stand-ins put
first on ``PATH`` (the real engine on this machine must not be stopped or started twice), so
that each outcome — already answering, not installed, an engine that dies, one that never
answers, one that comes up — is reached on any machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "scripts" / "start-docker.sh"
TOOLS = ("bash", "timeout", "id", "mkdir", "dirname", "setsid", "sleep", "tail", "cat", "touch")


def _bin(tmp_path: Path, fakes: dict[str, str]) -> Path:
    """A directory with the tools the script needs and the given fake commands (name: body)."""
    out = tmp_path / "bin"
    out.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found is not None, tool
        (out / tool).symlink_to(found)
    fakes.setdefault("systemctl", "exit 1")
    for name, body in fakes.items():
        path = out / name
        path.write_text(f"#!/bin/bash\n{body}\n")
        path.chmod(0o755)
    return out


def _run(
    tmp_path: Path, fakes: dict[str, str], timeout: str = "10"
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": str(_bin(tmp_path, fakes)),
        "DOCKERD_LOG": str(tmp_path / "dockerd.log"),
        "DOCKER_START_TIMEOUT": timeout,
        "FLAG": str(tmp_path / "up"),
        "PIDFILE": str(tmp_path / "dockerd.pid"),
    }
    return subprocess.run(
        [str(SCRIPT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _kill_fake_dockerd(tmp_path: Path) -> None:
    pidfile = tmp_path / "dockerd.pid"
    if pidfile.exists():
        try:
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
        except ProcessLookupError:
            pass


# A fake `docker info` answers once the fake dockerd has touched $FLAG.
DOCKER = 'if [ "$1" = info ] && [ -e "$FLAG" ]; then exit 0; fi; exit 1'


@pytest.fixture(autouse=True)
def _root_only() -> None:
    if os.geteuid() != 0:
        why = "the script starts dockerd only as root"
        if os.environ.get("CI"):
            pytest.fail(f"root is required in CI (.ci/run runs as root): {why}")
        print(f"start-docker tests skipped: {why}")
        pytest.skip(why)


def test_start_docker_does_nothing_when_docker_answers(tmp_path: Path) -> None:
    (tmp_path / "up").touch()
    done = _run(tmp_path, {"docker": DOCKER, "dockerd": "echo must not start >&2; exit 9"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "start-docker: docker answers"


def test_start_docker_not_installed_says_how_to_install(tmp_path: Path) -> None:
    done = _run(tmp_path, {})
    assert done.returncode == 1
    assert "docker is not installed (apt-get install docker.io" in done.stderr


def test_start_docker_starts_dockerd_and_waits_until_it_answers(tmp_path: Path) -> None:
    dockerd = 'echo $$ > "$PIDFILE"; sleep 1; touch "$FLAG"; exec sleep 60'
    try:
        done = _run(tmp_path, {"docker": DOCKER, "dockerd": dockerd})
    finally:
        _kill_fake_dockerd(tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("start-docker: started dockerd (pid ")


def test_start_docker_dockerd_that_dies_shows_its_log(tmp_path: Path) -> None:
    dockerd = "echo 'failed to start daemon: no iptables' >&2; exit 1"
    done = _run(tmp_path, {"docker": DOCKER, "dockerd": dockerd})
    assert done.returncode == 1
    assert "dockerd exited before it answered" in done.stderr
    assert "failed to start daemon: no iptables" in done.stderr


def test_start_docker_gives_up_after_the_timeout(tmp_path: Path) -> None:
    dockerd = 'echo $$ > "$PIDFILE"; echo still starting; exec sleep 60'
    try:
        done = _run(tmp_path, {"docker": DOCKER, "dockerd": dockerd}, timeout="1")
    finally:
        _kill_fake_dockerd(tmp_path)
    assert done.returncode == 1
    assert "docker did not answer within 1s after dockerd" in done.stderr
    assert "still starting" in done.stderr
