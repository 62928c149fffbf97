"""The README's examples run as written, in order, on a fresh node.

``make run`` runs ``vfd up`` as root on the system paths (``/var/lib/vfd``, ``/run/vfd``). This
test runs the same ``vfd up``, as root, on a fresh state directory instead: the same two
processes with the same embedded defaults (SQLite, the host ``local``, one FUSE mount), only
under another directory, so it is the faithful equivalent of a fresh ``make run`` that leaves
the machine's own vfd alone. The examples' ``vfd`` is the virtualenv's console script, first on
``PATH`` (as ``/usr/local/bin/vfd`` links to it), with ``VFD_STATE_DIR`` pointing it at this
node. The sessions' examples need docker and the image ``make run`` builds: this test builds
it too (``scripts/build-test-image.sh``), and its one setting of its own, a node name
(``[sessions] node``), lets it remove the containers those examples keep.

Which blocks run is read from README.md itself, so the two cannot drift: a fenced ``sh`` block
right after a ``<!-- readme-test: run -->`` line runs; one after ``<!-- readme-test: skip
(why) -->`` does not; a block with neither fails here. The blocks run in order in one bash
(``set -euo pipefail``) started in an empty temporary directory, as a person pastes them into
one shell; a failing line is reported with its README line number, its text and the output.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from vfdcli import Cli

from vfd import mountinfo

sys.path.insert(0, str(Path(__file__).parents[1] / "sessions"))
from sessionnode import build_image, docker_missing, remove_containers

README = Path(__file__).parents[2] / "README.md"
UP_TIMEOUT = 90.0
RUN_TIMEOUT = 600.0
MARKER = re.compile(r"^<!-- readme-test: (run|skip \(.+\)) -->$")


@dataclass(frozen=True)
class Block:
    first_line: int
    """README line number of the block's first command line (1-based)."""
    lines: tuple[str, ...]
    run: bool


def readme_blocks(text: str) -> list[Block]:
    """Every fenced ``sh`` block with whether its marker says to run it; a block without a
    marker is an error, so that a new example is run or skipped on purpose."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() != "```sh":
            i += 1
            continue
        before = next((x.strip() for x in reversed(lines[:i]) if x.strip()), "")
        marker = MARKER.match(before)
        if marker is None:
            pytest.fail(
                f"README.md line {i + 1}: a ```sh block without a readme-test marker on the "
                "line before it (<!-- readme-test: run --> or <!-- readme-test: skip (why) -->)"
            )
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            pytest.fail(f"README.md line {i + 1}: the ```sh block is not closed")
        blocks.append(Block(i + 2, tuple(lines[i + 1 : end]), marker.group(1) == "run"))
        i = end + 1
    return blocks


def script_of(blocks: list[Block]) -> str:
    """One bash script whose line N is README line N (other lines blank), so ``$LINENO`` in
    the trace and in the error trap is the README's line number."""
    last = max(b.first_line + len(b.lines) for b in blocks)
    out = [""] * last
    out[0] = (
        "set -euo pipefail; PS4='+ README.md:${LINENO}: '; set -x; "
        "trap 'echo \"readme-test: README.md line $LINENO failed (status $?)\" >&2' ERR"
    )
    for block in blocks:
        if block.run:
            for k, line in enumerate(block.lines):
                assert block.first_line + k - 1 > 0
                out[block.first_line + k - 1] = line
    return "\n".join(out) + "\n"


def test_readme_markers_are_parsed() -> None:
    text = "\n".join(
        [
            "# t",
            "<!-- readme-test: skip (installs things) -->",
            "```sh",
            "make run",
            "```",
            "",
            "<!-- readme-test: run -->",
            "",
            "```sh",
            "vfd status",
            "vfd vfolder list",
            "```",
        ]
    )
    blocks = readme_blocks(text)
    assert [(b.first_line, b.lines, b.run) for b in blocks] == [
        (4, ("make run",), False),
        (10, ("vfd status", "vfd vfolder list"), True),
    ]
    script = script_of(blocks).splitlines()
    assert script[3] == "" and script[9:11] == ["vfd status", "vfd vfolder list"]
    with pytest.raises(pytest.fail.Exception, match="line 2: a ```sh block without"):
        readme_blocks("text\n```sh\nvfd status\n```\n")


def test_readme_has_examples_and_skips_only_what_it_must() -> None:
    blocks = readme_blocks(README.read_text())
    skipped = [line for b in blocks if not b.run for line in b.lines]
    assert any(line.startswith("make run") for line in skipped)  # the set-up commands
    assert any(line.startswith("rm -rf /var/lib/vfd") for line in skipped)  # starting fresh
    run = [line for b in blocks if b.run for line in b.lines]
    assert len(run) > 30
    for line in run:  # optional syntax is prose or a comment, never a runnable line
        command = line.split("#", 1)[0]
        assert "[--" not in command and "<" not in command.replace("<<", ""), line


def _missing() -> str | None:
    if not Path("/dev/fuse").exists():
        return "/dev/fuse is missing"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is not installed (apt-get install fuse3)"
    if os.geteuid() != 0:
        return "the README's examples are run as root (as `make run`)"
    docker = docker_missing()
    if docker is not None:
        return f"the README's session examples need docker: {docker}"
    return None


class Node:
    """A fresh ``vfd --state-dir D up`` (mountd and the daemon)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.log = state_dir.parent / "up.log"
        self.node_name = f"readme-{secrets.token_hex(4)}"
        state_dir.mkdir()
        (state_dir / "vfd.toml").write_text(f'[sessions]\nnode = "{self.node_name}"\n')
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("VFD_")}
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                [str(Path(sys.executable).parent / "vfd"), "--state-dir", str(state_dir), "up"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
            )
        self.cli = Cli({"VFD_STATE_DIR": str(state_dir)})

    def wait_ready(self) -> None:
        deadline = time.monotonic() + UP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"vfd up exited {self.process.returncode}:\n{self.log.read_text()}")
            status = self.cli.run("status", "--json")
            if status.exit_code == 0 and '"mountd": null' not in status.stdout:
                return
            time.sleep(0.2)
        pytest.fail(f"vfd up did not come up in {UP_TIMEOUT}s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(UP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A short-named temporary directory (unix socket paths are limited to 107 bytes) holding
    the node's state and the examples' working directory; mounts left under it are removed
    before it is (a failed example may leave its bind mount)."""
    top = Path(tempfile.mkdtemp(prefix="vfd-readme-", dir="/tmp"))
    try:
        yield top
    finally:
        left = [m.mount_point for m in mountinfo.read() if m.mount_point.startswith(f"{top}/")]
        for target in sorted(left, key=len, reverse=True):
            subprocess.run(["umount", "-l", target], check=False)
        shutil.rmtree(top, ignore_errors=True)


def test_readme_examples_run_as_written_on_a_fresh_node(scratch: Path) -> None:
    why = _missing()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the README test needs FUSE, docker and root in CI: {why}")
        print(f"README examples not run: {why}")
        pytest.skip(why)
    build_image()
    blocks = readme_blocks(README.read_text())
    script = scratch / "readme.sh"
    script.write_text(script_of(blocks))
    work = scratch / "work"
    work.mkdir()
    node = Node(scratch / "state")
    try:
        node.wait_ready()
        env = {
            **node.env,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "VFD_STATE_DIR": str(node.state_dir),
            "TMPDIR": str(work),
            "COLUMNS": "120",
        }
        done = subprocess.run(
            ["bash", str(script)],
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
    finally:
        node.stop()
        remove_containers(node.node_name)
    if done.returncode != 0:
        pytest.fail(_failure(done.stdout, done.returncode) + f"\n--- vfd up:\n{_tail(node)}")
    assert not re.search(r"readme-test: README.md line \d+ failed", done.stdout), done.stdout


def _failure(output: str, code: int) -> str:
    """The failing README line, its text and what it printed."""
    readme = README.read_text().splitlines()
    found = re.search(r"readme-test: README.md line (\d+) failed", output)
    if found is None:
        return f"the README's examples failed (status {code}):\n{output[-6000:]}"
    number = int(found.group(1))
    start = output.rfind(f"+ README.md:{number}: ")
    shown = output[start:] if start >= 0 else output[-6000:]
    return f"README.md line {number} failed: {readme[number - 1].strip()}\n{shown[-6000:]}"


def _tail(node: Node) -> str:
    return "\n".join(node.log.read_text(errors="replace").splitlines()[-40:])
