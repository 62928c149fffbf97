"""Directory uploads whose top directories are new, sent while the tree is walked (a chunked
archive, ``vfd.cli.transfer._upload_new_trees``): the same result as an upload planned whole,
the large files after the archive, refusals read before any of the body is sent, and a source
that fails mid-walk named, with nothing left behind."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from filenode import Node
from test_files_cli_archive import expected, make_source, snapshot
from test_files_transfer import daemon_pid, not_store, open_fds, wait_fds_back

import vfd.cli.tarsend as tarsend
import vfd.cli.transfer as transfer

KiB = 1 << 10
MiB = 1 << 20


def spy_bodies(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Which archive bodies were sent: ``"stream"`` (walked while sent) or ``"sized"``."""
    sent: list[str] = []
    stream, sized = tarsend.TarStream.send_chunks, tarsend.TarBody.send

    def spy_stream(self: tarsend.TarStream, sock: Any) -> None:
        sent.append("stream")
        stream(self, sock)

    def spy_sized(self: tarsend.TarBody, sock: Any) -> None:
        sent.append("sized")
        sized(self, sock)

    monkeypatch.setattr(tarsend.TarStream, "send_chunks", spy_stream)
    monkeypatch.setattr(tarsend.TarBody, "send", spy_sized)
    return sent


def test_streamed_upload_sends_large_files_after_the_archive(
    node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = node.user()
    folder = node.folder(alice)
    src = tmp_path / "src"
    make_source(src)
    (src / "a" / "big1").write_bytes(os.urandom(MiB))
    (src / "empty" / "deeper" / "big2").write_bytes(os.urandom(MiB + 7))
    monkeypatch.setattr(transfer, "ARCHIVE_FILE_MAX", 512 * KiB)
    sent = spy_bodies(monkeypatch)
    alone: list[str] = []
    real = transfer._send_file

    def spy_file(client: Any, base: str, item: transfer.UploadItem, *a: Any, **kw: Any) -> None:
        alone.append(item.dest)
        real(client, base, item, *a, **kw)

    monkeypatch.setattr(transfer, "_send_file", spy_file)
    result = node.cli.json("vfolder", "upload", folder["name"], str(src), as_=alice["email"])
    assert sent == ["stream"]
    assert sorted(alone) == ["src/a/big1", "src/empty/deeper/big2"]
    assert snapshot(node.backing(folder)) == expected(src, b"")
    dirs, items = transfer.plan_upload([src], "")
    assert len(result["files"]) == len(items) and len(result["directories"]) == len(dirs)
    usage = node.usage(folder)
    assert usage["used_files"] == len(snapshot(node.backing(folder)))


def test_upload_into_an_existing_top_is_planned_whole(
    node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A top directory that exists already: every planned directory below it is listed and
    checked first (an archive per existing directory), as before."""
    alice = node.user()
    folder = node.folder(alice)
    src = tmp_path / "src"
    make_source(src)
    node.cli.ok("vfolder", "mkdir", folder["name"], "src", as_=alice["email"])
    sent = spy_bodies(monkeypatch)
    node.cli.ok("vfolder", "upload", folder["name"], str(src), as_=alice["email"])
    assert sent == ["sized"]
    assert snapshot(node.backing(folder)) == expected(src, b"")


def test_streamed_upload_refused_is_answered_before_its_body(
    node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The archive asks for ``100 Continue``: the daemon's refusal (a read-only share) comes
    instead, and not a byte of the tree is read or sent."""
    alice, bob = node.user(), node.user()
    folder = node.folder(alice)
    node.share(alice, folder["name"], bob, permission="ro")
    src = tmp_path / "src"
    make_source(src)
    walked: list[str] = []
    real = transfer._NewTrees._walk

    def spy_walk(self: transfer._NewTrees) -> Any:
        for path, item in real(self):
            walked.append(path)
            yield path, item

    monkeypatch.setattr(transfer._NewTrees, "_walk", spy_walk)
    err = node.cli.fails(
        "vfolder", "upload", folder["name"], str(src), code="permission_denied", as_=bob["email"]
    )
    assert "needs rw permission" in err["message"]
    assert walked == []
    assert list(node.backing(folder).iterdir()) == []


def test_streamed_upload_of_a_file_gone_mid_walk_names_it_and_leaves_nothing(
    node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = node.user()
    folder = node.folder(alice)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(20):
        (src / f"f{i:02d}").write_bytes(os.urandom(100 * KiB))
    victim = src / "f13"
    real = transfer._NewTrees.members

    def remove_after_walked(self: transfer._NewTrees) -> Any:
        for member in real(self):
            if member.source == os.fsencode(victim):
                victim.unlink()  # after its size was read, before it is opened
            yield member

    monkeypatch.setattr(transfer._NewTrees, "members", remove_after_walked)
    pid = daemon_pid(node)
    baseline = len(not_store(open_fds(pid)))
    result = node.cli.run("vfolder", "upload", folder["name"], str(src), as_=alice["email"])
    monkeypatch.undo()
    assert result.exit_code == 1, result.output
    assert str(victim) in result.stderr
    wait_fds_back(pid, baseline, ".vfd-upload-")
    assert list(node.backing(folder).iterdir()) == []
    assert node.usage(folder)["used_files"] == 0
    # run again (the file is gone): the rest goes
    node.cli.ok("vfolder", "upload", folder["name"], str(src), as_=alice["email"])
    assert len(list((node.backing(folder) / "src").iterdir())) == 19
