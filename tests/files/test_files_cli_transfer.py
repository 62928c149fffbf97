"""The CLI's side of transfers: files sent with ``sendfile``, many files in parallel (under a
per-user limit of file requests lower than the CLI's own parallelism), downloads received into
one buffer, and every fd and thread released when a transfer is cut short."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest
from filenode import Node
from test_files_transfer import interrupt_downloads_after, open_fds

import vfd.cli.client as client_module
import vfd.cli.transfer as transfer
from vfd.cli.client import FileBody

# two file requests per user at once: the CLI's four workers meet 429 answers and go on
NODE_CONFIG = "[limits]\nuser_files = 2\n"

KiB = 1 << 10
MiB = 1 << 20


def fds() -> list[str]:
    """What this process's fds refer to (sockets, files), sorted."""
    return sorted(open_fds(os.getpid()))


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def make_tree(root: Path, files: int, size: int) -> dict[str, bytes]:
    for i in range(files):
        sub = root / f"d{i % 7}" / ("deeper" if i % 3 else "")
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i:04d}.bin").write_bytes(os.urandom(size + i % 5))
    return tree(root)


def test_cli_uploads_and_downloads_many_files_past_the_request_limit(
    node: Node, tmp_path: Path
) -> None:
    alice = node.user()
    folder = node.folder(alice)
    src = tmp_path / "many"
    want = make_tree(src, 300, 4 * KiB)
    result = node.cli.json("vfolder", "upload", folder["name"], str(src), as_=alice["email"])
    assert sorted(f["path"] for f in result["files"]) == sorted(f"many/{p}" for p in want)
    assert tree(node.backing(folder) / "many") == want
    assert node.usage(folder)["used_bytes"] == sum(len(b) for b in want.values())
    dest = tmp_path / "back"
    node.cli.ok(
        "vfolder", "download", folder["name"], "many", "--dest", str(dest), as_=alice["email"]
    )
    assert tree(dest / "many") == want


def test_cli_upload_sends_the_file_with_sendfile(
    node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One request per file with a Content-Length, its body handed to the kernel."""
    alice = node.user()
    folder = node.folder(alice)
    src = tmp_path / "big.bin"
    payload = os.urandom(24 * MiB + 5)
    src.write_bytes(payload)
    seen: list[tuple[int, int]] = []
    real = client_module._send_file

    def spy(sock: Any, body: FileBody) -> None:
        seen.append((body.offset, body.length))
        real(sock, body)

    monkeypatch.setattr(client_module, "_send_file", spy)
    node.cli.ok("vfolder", "upload", folder["name"], str(src), as_=alice["email"])
    assert seen == [(0, len(payload))]
    assert (node.backing(folder) / "big.bin").read_bytes() == payload


def interrupt_sends(monkeypatch: pytest.MonkeyPatch, *, after: int, in_main: bool) -> list[int]:
    """Make the CLI's file bodies stop (as on Ctrl-C) halfway through the body of the
    ``after``-th request sent from the main thread (``in_main``) or from a worker thread; the
    calls seen so far."""
    real = client_module._send_file
    calls = [0]

    def cut(sock: Any, body: FileBody) -> None:
        if (threading.current_thread() is threading.main_thread()) == in_main:
            calls[0] += 1
            if calls[0] >= after:
                half = FileBody(body.file, body.offset, body.length // 2, body.advance)
                real(sock, half)
                raise KeyboardInterrupt
        real(sock, body)

    monkeypatch.setattr(client_module, "_send_file", cut)
    return calls


# Only the worker-thread case: with four senders the main thread may send no body at all
# before the others finish, so a cut "in the main thread" is not reliably reached.
@pytest.mark.parametrize("in_main", [False], ids=["worker-thread"])
def test_cli_interrupted_uploads_release_every_fd_and_thread(
    node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_main: bool
) -> None:
    alice = node.user()
    folder = node.folder(alice)
    src = tmp_path / "src"
    want = make_tree(src, 24, 1 * MiB)
    warm = tmp_path / "warm.bin"
    warm.write_bytes(b"w")
    node.cli.ok("vfolder", "upload", folder["name"], str(warm), as_=alice["email"])
    before_fds, before_threads = fds(), threading.active_count()
    monkeypatch.setattr(transfer, "ARCHIVE_FILE_MAX", 512 * KiB)  # each file a request
    interrupt_sends(monkeypatch, after=3, in_main=in_main)
    result = node.cli.run("vfolder", "upload", folder["name"], str(src), as_=alice["email"])
    monkeypatch.undo()
    assert result.exit_code == 130, result.output  # as on Ctrl-C
    assert threading.active_count() == before_threads
    assert fds() == before_fds
    backing = node.backing(folder) / "src"
    stored = tree(backing) if backing.exists() else {}
    parts = [p for p in stored if Path(p).name.startswith(".vfd-upload-")]
    done = {p: b for p, b in stored.items() if p not in parts}
    assert parts  # the file cut halfway keeps what arrived, to resume from
    assert len(done) < len(want)  # cut short
    assert all(want[p] == b for p, b in done.items())  # what is there is whole
    # run again: the rest goes, the stored part of the file cut halfway resumes
    monkeypatch.setattr(transfer, "ARCHIVE_FILE_MAX", 512 * KiB)
    node.cli.ok("vfolder", "upload", folder["name"], str(src), "--overwrite", as_=alice["email"])
    assert tree(backing) == want
    assert fds() == before_fds


def test_cli_interrupted_downloads_release_every_fd(
    node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = node.user()
    folder = node.folder(alice)
    name, email = folder["name"], alice["email"]
    src = tmp_path / "src"
    want = make_tree(src, 40, 512 * KiB)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(16 * MiB))
    node.cli.ok("vfolder", "upload", name, str(src), str(big), as_=email)
    dest = tmp_path / "dest"
    dest.mkdir()
    node.cli.ok("vfolder", "ls", name, as_=email)
    before = fds()
    for path in ("big.bin", "src"):
        interrupt_downloads_after(monkeypatch, 3 * MiB)
        result = node.cli.run("vfolder", "download", name, path, "--dest", str(dest), as_=email)
        monkeypatch.undo()
        assert result.exit_code == 130, result.output
        assert fds() == before, path
    # the file's part stays to resume; the directory's staging is gone
    assert sorted(p.name for p in dest.iterdir()) == ["big.bin.vfd-part", "big.bin.vfd-part.etag"]
    assert 3 * MiB <= (dest / "big.bin.vfd-part").stat().st_size < 16 * MiB
    node.cli.ok("vfolder", "download", name, "big.bin", "src", "--dest", str(dest), as_=email)
    assert (dest / "big.bin").read_bytes() == big.read_bytes()
    assert tree(dest / "src") == want
    assert fds() == before


def test_cli_upload_of_a_file_that_shrinks_meanwhile_fails_cleanly(
    node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A source cut shorter while it is sent: a clear error, not a request left hanging."""
    alice = node.user()
    folder = node.folder(alice)
    src = tmp_path / "shrinks.bin"
    src.write_bytes(os.urandom(8 * MiB))
    real = client_module._send_file

    def shrink_then_send(sock: Any, body: FileBody) -> None:
        os.truncate(src, 3 * MiB)
        real(sock, body)

    monkeypatch.setattr(client_module, "_send_file", shrink_then_send)
    before = fds()
    result = node.cli.run("vfolder", "upload", folder["name"], str(src), as_=alice["email"])
    monkeypatch.undo()
    assert result.exit_code == 1, result.output
    assert "changed while it was uploaded" in result.stderr
    assert "[invalid_argument]" in result.stderr
    assert fds() == before
    assert not (node.backing(folder) / "shrinks.bin").exists()
