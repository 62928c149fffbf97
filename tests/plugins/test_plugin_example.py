"""examples/vfd-plugin-example: it installs as a distribution with a ``vfd`` entry point, and
its own tests (written with ``vfd.plugins.testing``) pass against this vfd."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parents[2] / "examples" / "vfd-plugin-example"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example installed into a directory of its own (the venv is left as it is), built
    from a copy (a build leaves files in its source tree)."""
    target = tmp_path_factory.mktemp("example-site")
    source = tmp_path_factory.mktemp("example-src") / "vfd-plugin-example"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("*.egg-info", "build"))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return target


def test_example_installs_with_its_entry_point(installed: Path) -> None:
    script = (
        "import importlib.metadata as m; "
        "print([(e.name, e.value, e.dist.metadata['Name']) for e in m.entry_points(group='vfd')"
        " if e.name == 'example'])"
    )
    env = {**os.environ, "PYTHONPATH": str(installed)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.stdout.strip() == (
        "[('example', 'vfd_plugin_example:plugin', 'vfd-plugin-example')]"
    ), done.stderr


def test_example_own_tests_pass(installed: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(installed)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", "tests"],
        cwd=EXAMPLE,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "9 passed" in done.stdout and "skipped" not in done.stdout, done.stdout
