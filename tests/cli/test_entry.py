"""The ``vfd`` console script (:mod:`vfd.cli.entry`) ends with ``os._exit`` after the exit
handlers: its exit status, its output and every exit handler a command registered must be as
a normal interpreter exit leaves them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).parent / "vfd"

# ``vfd.cli.entry.run`` with ``main`` replaced: registers an exit handler while "running",
# writes output, and ends as told by argv[1]
FAKE = """
import atexit, sys
import vfd.cli.main
from vfd.cli import entry
marker, how = sys.argv[1], sys.argv[2]
def fake_main():
    atexit.register(lambda: open(marker, "w").write("handler ran"))
    sys.stdout.write("x" * 200_000)  # more than a pipe holds: must be flushed at the end
    if how == "return":
        return
    if how == "raise":
        raise RuntimeError("boom")
    sys.exit(int(how) if how.isdigit() else how)
vfd.cli.main.main = fake_main
entry.run()
"""


def test_console_script_runs_entry() -> None:
    assert SCRIPT.exists(), f"{SCRIPT}: the package is not installed in this venv"
    assert "vfd.cli.entry" in SCRIPT.read_text(), "the vfd script must start vfd.cli.entry.run"
    done = subprocess.run([str(SCRIPT), "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("vfd "), done
    bad = subprocess.run([str(SCRIPT), "no-such-command"], capture_output=True, text=True)
    assert bad.returncode == 2 and "no-such-command" in bad.stderr, bad


def test_help_output_whole_through_a_pipe() -> None:
    """The quick exit loses nothing of what was written (same bytes as a normal exit)."""
    quick = subprocess.run([str(SCRIPT), "--help"], capture_output=True, timeout=60)
    normal = subprocess.run(
        [sys.executable, "-c", "from vfd.cli.main import main; main()", "--help"],
        capture_output=True,
        timeout=60,
    )
    assert quick.returncode == normal.returncode == 0
    assert quick.stdout == normal.stdout and len(quick.stdout) > 500


@pytest.mark.parametrize(
    ("how", "status"),
    [("return", 0), ("0", 0), ("3", 3), ("a message", 1), ("raise", 1)],
)
def test_status_output_and_handlers(tmp_path: Path, how: str, status: int) -> None:
    marker = tmp_path / "marker"
    done = subprocess.run(
        [sys.executable, "-c", FAKE, str(marker), how], capture_output=True, timeout=60
    )
    assert done.returncode == status, done.stderr
    assert done.stdout == b"x" * 200_000
    assert marker.read_text() == "handler ran"
    if how == "a message":
        assert b"a message" in done.stderr
    if how == "raise":
        assert b"RuntimeError: boom" in done.stderr
