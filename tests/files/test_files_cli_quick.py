"""``vfd vfolder upload`` and ``vfd vfolder download`` on the console script's fast path
(:mod:`vfd.cli.quickcmds`, run by :mod:`vfd.cli.transferview` as the typer commands are) and
through typer (``VFD_QUICK=off``), as real processes against a real node: the same output,
exit status, errors and files either way, and the fast path imports no typer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from filenode import Node

VFD = str(Path(sys.executable).parent / "vfd")
KiB = 1 << 10


def vfd(node: Node, who: str, *args: str, quick: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VFD_")}
    env.update({k: v for k, v in node.env.items() if v is not None})
    env["COLUMNS"] = "200"
    if not quick:
        env["VFD_QUICK"] = "off"
    return subprocess.run(
        [VFD, "--as", who, *args], env=env, capture_output=True, text=True, timeout=120
    )


def both(node: Node, who: str, *args: str) -> tuple[Any, Any]:
    """Run ``vfd ARGS`` both ways; assert the same status, stdout and stderr (with the
    paths that differ between the two runs made equal); the two results."""
    fast = vfd(node, who, *args, quick=True)
    slow = vfd(node, who, *[a.replace("-quick", "-typer") for a in args], quick=False)
    same = (slow.returncode, *(t.replace("-typer", "-quick") for t in (slow.stdout, slow.stderr)))
    assert (fast.returncode, fast.stdout, fast.stderr) == same
    return fast, slow


def make_tree(root: Path) -> dict[str, bytes]:
    files = {}
    for i in range(30):
        rel = f"d{i % 3}/f{i:03d}.bin"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        data = os.urandom(4 * KiB + i)
        (root / rel).write_bytes(data)
        files[rel] = data
    return files


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_quick_upload_and_download_match_typer(node: Node, tmp_path: Path) -> None:
    alice = node.user()
    folder = node.folder(alice)
    who, name = alice["email"], folder["name"]
    for way in ("quick", "typer"):
        want = make_tree(tmp_path / f"src-{way}")
        (tmp_path / f"one-{way}.txt").write_bytes(b"one file\n")
        assert want
    # a directory and a file, human output, options after the arguments
    fast, _ = both(
        node, who, "vfolder", "upload", name, str(tmp_path / "src-quick"),
        str(tmp_path / "one-quick.txt"), "--dest", "in-quick",
    )  # fmt: skip
    assert fast.stdout.startswith("Uploaded 31 file(s), ")
    backing = node.backing(folder)
    assert tree(backing / "in-quick" / "src-quick") == tree(tmp_path / "src-quick")
    assert tree(backing / "in-typer" / "src-typer") == tree(tmp_path / "src-typer")
    # --json, -d, --overwrite before the arguments
    fast, _ = both(
        node, who, "vfolder", "upload", "--overwrite", "-d", "in-quick", name,
        str(tmp_path / "one-quick.txt"), "--json",
    )  # fmt: skip
    assert json.loads(fast.stdout)["files"][0]["path"] == "in-quick/one-quick.txt"
    # a file in the way, without --overwrite: the same error, nothing sent
    fast, _ = both(
        node, who, "vfolder", "upload", name, str(tmp_path / "one-quick.txt"), "-d", "in-quick"
    )
    assert fast.returncode == 1 and "[path_exists]" in fast.stderr
    # a source that does not exist
    fast, _ = both(node, who, "vfolder", "upload", name, str(tmp_path / "none-quick"))
    assert fast.returncode == 1 and fast.stderr.startswith("error: ")
    # downloads: a directory and a file into a directory made for them
    fast, _ = both(
        node, who, "vfolder", "download", name, "in-quick/src-quick", "in-quick/one-quick.txt",
        "--dest", str(tmp_path / "back-quick" / "deeper"),
    )  # fmt: skip
    assert fast.stdout.startswith("Downloaded 2 item(s) to ")
    back = tmp_path / "back-quick" / "deeper"
    assert tree(back / "src-quick") == tree(tmp_path / "src-quick")
    assert (back / "one-quick.txt").read_bytes() == b"one file\n"
    assert tree(tmp_path / "back-typer" / "deeper" / "src-typer") == tree(tmp_path / "src-typer")
    # a path missing in the folder: the same error, no directory left behind
    fast, _ = both(
        node, who, "vfolder", "download", name, "nothing-quick", "-d", str(tmp_path / "new-quick")
    )
    assert fast.returncode == 1 and "[path_not_found]" in fast.stderr
    assert not (tmp_path / "new-quick").exists() and not (tmp_path / "new-typer").exists()


def test_quick_transfers_import_no_typer(node: Node, tmp_path: Path) -> None:
    alice = node.user()
    folder = node.folder(alice)
    (tmp_path / "x.txt").write_bytes(b"x")
    report = (
        "import sys\nfrom vfd.cli import quick\nstatus = quick.run(sys.argv[1:])\n"
        "sys.stdout.flush()\n"
        "print(status, 'TYPER' if 'typer' in sys.modules else 'NO-TYPER', file=sys.stderr)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("VFD_")}
    env.update({k: v for k, v in node.env.items() if v is not None})
    for argv in (
        ["vfolder", "upload", folder["name"], str(tmp_path / "x.txt")],
        ["vfolder", "download", folder["name"], "x.txt", "-d", str(tmp_path / "b")],
    ):
        done = subprocess.run(
            [sys.executable, "-c", report, "--as", alice["email"], *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.stderr.rstrip().endswith("0 NO-TYPER"), (argv, done.stdout, done.stderr)
    assert (tmp_path / "b" / "x.txt").read_bytes() == b"x"


def on_terminal(node: Node, who: str, *args: str) -> tuple[int, str]:
    """Run ``vfd ARGS`` with a pseudo-terminal as its stdout and stderr: its exit status and
    all it wrote there."""
    import pty

    env = {k: v for k, v in os.environ.items() if not k.startswith("VFD_")}
    env.update({k: v for k, v in node.env.items() if v is not None})
    env.update({"COLUMNS": "120", "TERM": "xterm"})
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen(
            [VFD, "--as", who, *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=terminal,
            stderr=terminal,
        )
        os.close(terminal)
        terminal = -1
        out = bytearray()
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the terminal's last writer is gone
                break
            if not chunk:
                break
            out += chunk
        return proc.wait(timeout=120), out.decode(errors="replace")
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)


def test_progress_shows_on_a_terminal_and_not_in_a_pipe(node: Node, tmp_path: Path) -> None:
    """A transfer shows rich's progress bar (name, bytes, speed) on a terminal; into a pipe it
    prints only its result, and does not import rich's progress module at all."""
    alice = node.user()
    folder = node.folder(alice)
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(3 << 20))
    rc, shown = on_terminal(node, alice["email"], "vfolder", "upload", folder["name"], str(src))
    assert rc == 0, shown
    assert f"upload to {folder['name']}" in shown and "3.1/3.1 MB" in shown, shown
    dest = tmp_path / "back"
    rc, shown = on_terminal(
        node, alice["email"], "vfolder", "download", folder["name"], "big.bin", "--dest", str(dest)
    )
    assert rc == 0, shown
    assert f"download from {folder['name']}" in shown and "3.1/3.1 MB" in shown, shown
    assert (dest / "big.bin").read_bytes() == src.read_bytes()
    # into a pipe: the result line alone; rich never imported (python -X importtime): whether
    # stdout is a terminal is asked without it
    env = {k: v for k, v in os.environ.items() if not k.startswith("VFD_")}
    env.update({k: v for k, v in node.env.items() if v is not None})
    env["PYTHONPROFILEIMPORTTIME"] = "1"
    done = subprocess.run(
        [
            VFD,
            "--as",
            alice["email"],
            "vfolder",
            "upload",
            folder["name"],
            str(src),
            "--dest",
            "again",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Uploaded 1 file(s), 3 MiB, to {folder['name']}"), done.stdout
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()]
    assert "vfd.cli.transfer" in imported  # the import log is there
    assert not [m for m in imported if m == "rich" or m.startswith("rich.")], imported
