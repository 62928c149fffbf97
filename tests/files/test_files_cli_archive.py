"""Directory uploads through the CLI as archives (``PUT .../upload-archive``): the same tree as
one request per file made, existing directories merged into, refusals before anything is
made, and nothing left behind by an archive that fails, changes or is cut short."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
from filenode import Node
from test_files_transfer import daemon_pid, not_store, open_fds, wait_fds_back

import vfd.cli.tarsend as tarsend
import vfd.cli.transfer as transfer
from vfd.cli.client import VfdClient

KiB = 1 << 10
MiB = 1 << 20


def snapshot(root: Path) -> dict[bytes, tuple[str, int, bytes]]:
    """Every entry below ``root`` by its relative name (bytes): type, permission bits, and
    the contents of a file or the target of a link."""
    out: dict[bytes, tuple[str, int, bytes]] = {}
    top = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(top):
        for name in [*dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, top)
            if stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), b"")
            elif stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", 0, os.readlink(path))
            else:
                with open(path, "rb") as f:
                    out[rel] = ("file", stat.S_IMODE(st.st_mode), f.read())
    return out


def make_source(root: Path) -> None:
    """A tree with what a directory upload meets: nested and empty directories, files of
    several sizes and modes, links (left out), and names that are not UTF-8."""
    (root / "a" / "b" / "c").mkdir(parents=True)
    (root / "empty" / "deeper").mkdir(parents=True)
    (root / "top.txt").write_bytes(b"top")
    (root / "zero").write_bytes(b"")
    (root / "a" / "one.bin").write_bytes(os.urandom(513))
    (root / "a" / "b" / "two.bin").write_bytes(os.urandom(100 * KiB + 1))  # sendfile'd
    (root / "a" / "b" / "c" / ("n" * 150)).write_bytes(b"long name")  # a GNU long name
    (root / "a" / "x.sh").write_bytes(b"#!/bin/sh\n")
    (root / "a" / "x.sh").chmod(0o755)
    (root / "a" / "private").write_bytes(b"p")
    (root / "a" / "private").chmod(0o600)
    os.symlink("top.txt", root / "link")
    os.symlink("a", root / "dirlink")
    raw = os.fsencode(root)
    os.mkdir(raw + b"/d\xfe")
    with open(raw + b"/d\xfe/in\xfd.bin", "wb") as f:
        f.write(b"fd")


def expected(src: Path, under: bytes) -> dict[bytes, tuple[str, int, bytes]]:
    """What uploading ``src`` makes below ``under``, as one request per file made it: the
    directories (0755) and regular files (0644) of ``src``, links and what is below them
    left out."""
    want = {under + os.fsencode(src.name): ("dir", 0o755, b"")}
    for rel, (kind, _mode, data) in snapshot(src).items():
        if kind != "link" and not rel.startswith(b"dirlink"):
            name = under + os.fsencode(src.name) + b"/" + rel
            want[name] = (kind, 0o755 if kind == "dir" else 0o644, data)
    return want


def test_cli_archive_upload_makes_the_tree_one_request_per_file_made(
    node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = node.user()
    email = alice["email"]
    src = tmp_path / "src"
    make_source(src)
    folder = node.folder(alice)
    sent: list[int] = []
    real = tarsend.TarBody.send

    def spy(self: tarsend.TarBody, sock: Any) -> None:
        sent.append(len(self.members))
        real(self, sock)

    monkeypatch.setattr(tarsend.TarBody, "send", spy)
    result = node.cli.json(
        "vfolder", "upload", folder["name"], str(src), "--dest", "in/here", as_=email
    )
    assert len(sent) == 1  # one archive for the whole tree
    backing = node.backing(folder)
    got = snapshot(backing)
    want = expected(src, b"in/here/")
    assert got == {b"in": ("dir", 0o755, b""), b"in/here": ("dir", 0o755, b""), **want}
    assert b"in/here/src/empty/deeper" in got
    assert got[b"in/here/src/d\xfe/in\xfd.bin"] == ("file", 0o644, b"fd")
    files = sorted(f["path"] for f in result["files"])
    assert len(files) == 8 and "in/here/src/a/b/two.bin" in files
    assert {f["resumed_from"] for f in result["files"]} == {0}
    assert "in/here/src/empty/deeper" in result["directories"]
    for path in (backing / "in/here/src", backing / "in/here/src/a/one.bin"):
        st = path.stat()
        assert (st.st_uid, st.st_gid) == (alice["uid"], alice["gid"])
    usage = node.usage(folder)
    assert usage["used_bytes"] == sum(len(v[2]) for v in want.values())
    assert usage["used_files"] == len(got)


def test_cli_archive_upload_merges_into_existing_directories(node: Node, tmp_path: Path) -> None:
    alice = node.user()
    email, name = alice["email"], node.folder(alice)["name"]
    src = tmp_path / "data"
    (src / "old").mkdir(parents=True)
    (src / "old" / "kept.txt").write_bytes(b"1")
    node.cli.ok("vfolder", "upload", name, str(src), as_=email)
    (src / "old" / "more.txt").write_bytes(b"2")
    (src / "new" / "sub").mkdir(parents=True)
    (src / "new" / "sub" / "f").write_bytes(b"3")
    (src / "old" / "kept.txt").unlink()
    node.cli.ok("vfolder", "upload", name, str(src), as_=email)
    folder = next(
        f for f in node.cli.json("vfolder", "list", as_=email)["vfolders"] if f["name"] == name
    )
    got = snapshot(node.backing(folder))
    assert {k: v[2] for k, v in got.items() if v[0] == "file"} == {
        b"data/old/kept.txt": b"1",
        b"data/old/more.txt": b"2",
        b"data/new/sub/f": b"3",
    }


def test_cli_archive_upload_refuses_an_existing_file_before_anything_is_made(
    node: Node, tmp_path: Path
) -> None:
    alice = node.user()
    folder = node.folder(alice)
    email, name = alice["email"], folder["name"]
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f.txt").write_bytes(b"old")
    node.cli.ok("vfolder", "upload", name, str(src), as_=email)
    (src / "sub" / "f.txt").write_bytes(b"new")
    (src / "sub" / "g.txt").write_bytes(b"g")
    (src / "new").mkdir()
    pid = daemon_pid(node)
    err = node.cli.fails("vfolder", "upload", name, str(src), code="path_exists", as_=email)
    assert err["details"]["path"] == "tree/sub/f.txt"
    assert "--overwrite" in err["message"]
    backing = node.backing(folder)
    assert snapshot(backing) == {
        b"tree": ("dir", 0o755, b""),
        b"tree/sub": ("dir", 0o755, b""),
        b"tree/sub/f.txt": ("file", 0o644, b"old"),
    }
    # a file where a directory is, a directory where a file is: refused, with --overwrite too
    (tmp_path / "y" / "tree").mkdir(parents=True)
    (tmp_path / "y" / "tree" / "sub").write_bytes(b"a file")
    node.cli.fails(
        "vfolder",
        "upload",
        name,
        str(tmp_path / "y" / "tree"),
        "--overwrite",
        code="is_a_directory",
        as_=email,
    )
    (tmp_path / "z" / "tree" / "sub" / "f.txt").mkdir(parents=True)
    node.cli.fails(
        "vfolder",
        "upload",
        name,
        str(tmp_path / "z" / "tree"),
        "--overwrite",
        code="not_a_directory",
        as_=email,
    )
    assert len(snapshot(backing)) == 3
    # with --overwrite, files are replaced and the rest merged in
    node.cli.ok("vfolder", "upload", name, str(src), "--overwrite", as_=email)
    got = snapshot(backing)
    assert got[b"tree/sub/f.txt"] == ("file", 0o644, b"new")
    assert got[b"tree/sub/g.txt"] == ("file", 0o644, b"g")
    assert got[b"tree/new"] == ("dir", 0o755, b"")
    assert not [p for p in backing.rglob(".vfd-upload-*")]
    wait_fds_back(pid, len(not_store(open_fds(pid))), ".vfd-upload-")


def test_cli_archive_upload_past_the_quota_leaves_nothing(node: Node, tmp_path: Path) -> None:
    alice = node.user()
    folder = node.folder(alice)
    email, name = alice["email"], folder["name"]
    node.cli.ok("admin", "quota", "set", "--user", email, "--bytes", "1M")
    src = tmp_path / "big"
    src.mkdir()
    for i in range(30):
        (src / f"f{i:02d}").write_bytes(os.urandom(50 * KiB))
    err = node.cli.fails("vfolder", "upload", name, str(src), code="quota_exceeded", as_=email)
    assert "quota" in err["message"]
    assert list(node.backing(folder).iterdir()) == []
    usage = node.usage(folder)
    assert (usage["used_bytes"], usage["used_files"]) == (0, 0)


@pytest.mark.parametrize("change", ["grows", "shrinks", "shrinks-while-sent"])
def test_cli_archive_upload_of_a_file_that_changes_fails_cleanly(
    node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    alice = node.user()
    folder = node.folder(alice)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(os.urandom(300 * KiB))
    victim = src / "b.bin"
    victim.write_bytes(os.urandom(400 * KiB))
    real = tarsend._sendfile
    if change == "shrinks-while-sent":

        def shrink(sock: Any, fd: int, member: tarsend.Member, advance: Any) -> None:
            if member.source == os.fsencode(victim):
                os.truncate(victim, 100 * KiB)
            real(sock, fd, member, advance)

        monkeypatch.setattr(tarsend, "_sendfile", shrink)
    else:
        real_body = tarsend.TarBody.send

        def change_first(self: tarsend.TarBody, sock: Any) -> None:
            os.truncate(victim, 500 * KiB if change == "grows" else 10)
            real_body(self, sock)

        monkeypatch.setattr(tarsend.TarBody, "send", change_first)
    pid = daemon_pid(node)
    baseline = len(not_store(open_fds(pid)))
    result = node.cli.run("vfolder", "upload", folder["name"], str(src), as_=alice["email"])
    monkeypatch.undo()
    assert result.exit_code == 1, result.output
    assert "changed while it was uploaded" in result.stderr
    assert "[invalid_argument]" in result.stderr
    wait_fds_back(pid, baseline, ".vfd-upload-")
    assert list(node.backing(folder).iterdir()) == []
    assert node.usage(folder)["used_files"] == 0


def test_cli_archive_upload_interrupted_leaves_nothing_and_no_fd(
    node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = node.user()
    folder = node.folder(alice)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):
        (src / f"f{i:02d}").write_bytes(os.urandom(256 * KiB))
    (tmp_path / "warm").mkdir()
    (tmp_path / "warm" / "w").write_bytes(b"w")
    node.cli.ok("vfolder", "upload", folder["name"], str(tmp_path / "warm"), as_=alice["email"])
    pid = daemon_pid(node)
    baseline = len(not_store(open_fds(pid)))
    mine = sorted(open_fds(os.getpid()))
    threads = threading.active_count()
    real = tarsend._sendfile
    calls = [0]

    def cut(sock: Any, fd: int, member: tarsend.Member, advance: Any) -> None:
        calls[0] += 1
        if calls[0] == 20:
            raise KeyboardInterrupt
        real(sock, fd, member, advance)

    monkeypatch.setattr(tarsend, "_sendfile", cut)
    result = node.cli.run("vfolder", "upload", folder["name"], str(src), as_=alice["email"])
    monkeypatch.undo()
    assert result.exit_code == 130, result.output
    assert sorted(open_fds(os.getpid())) == mine
    assert threading.active_count() == threads
    wait_fds_back(pid, baseline, ".vfd-upload-")
    assert sorted(p.name for p in node.backing(folder).iterdir()) == ["warm"]
    # run again: all of it goes
    node.cli.ok("vfolder", "upload", folder["name"], str(src), as_=alice["email"])
    assert len(list((node.backing(folder) / "src").iterdir())) == 40


def test_cli_archive_upload_shows_its_progress(
    node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = node.user()
    folder = node.folder(alice)
    src = tmp_path / "src"
    src.mkdir()
    sizes = [10, 70 * KiB, 3 * MiB, 0]
    for i, size in enumerate(sizes):
        (src / f"f{i}").write_bytes(os.urandom(size))
    seen: list[int] = []
    real = transfer._Throttled.__call__

    def count(self: Any, n: int) -> None:
        seen.append(n)
        real(self, n)

    monkeypatch.setattr(transfer._Throttled, "__call__", count)
    node.cli.ok("vfolder", "upload", folder["name"], str(src), as_=alice["email"])
    assert sum(seen) == sum(sizes)


def test_cli_archive_headers_read_back_with_tarfile(tmp_path: Path) -> None:
    """The archive the CLI builds is one tarfile reads: names (long, not UTF-8), sizes,
    modes, times, the length announced."""
    import io
    import socket
    import tarfile

    files = {b"f": b"x" * 5, b"d/" + b"n" * 200: os.urandom(70 * KiB), b"d/\xff": b""}
    members = [tarsend.Member(b"d", None, mode=0o755, mtime=1_700_000_000)]
    for name, data in files.items():
        path = os.fsencode(tmp_path) + b"/" + name.replace(b"/", b"_")
        with open(path, "wb") as f:
            f.write(data)
        members.append(tarsend.Member(name, path, len(data), 0o644, 1_700_000_001))
    body = tarsend.TarBody(members)
    a, b = socket.socketpair()
    got = bytearray()

    def read() -> None:
        while chunk := b.recv(1 << 20):
            got.extend(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    body.send(a)
    a.close()
    reader.join()
    b.close()
    assert len(got) == body.length
    with tarfile.open(fileobj=io.BytesIO(bytes(got)), encoding="utf-8") as tar:
        infos = tar.getmembers()
        assert [os.fsencode(i.name) for i in infos] == [m.name for m in members]
        assert infos[0].isdir() and infos[0].mode == 0o755 and infos[0].mtime == 1_700_000_000
        for info, (_name, data) in zip(infos[1:], files.items(), strict=True):
            assert info.isreg() and info.size == len(data) and info.mode == 0o644
            assert tar.extractfile(info).read() == data  # type: ignore[union-attr]


def test_cli_archive_upload_into_a_directory_it_may_not_list(node: Node, tmp_path: Path) -> None:
    """A directory the user may write to but not read: what is in it is asked name by name,
    and an existing file there is still refused."""
    alice = node.user()
    folder = node.folder(alice)
    email, name = alice["email"], folder["name"]
    src = tmp_path / "box"
    (src / "new").mkdir(parents=True)
    (src / "new" / "f").write_bytes(b"f")
    (src / "a").write_bytes(b"a")
    node.cli.ok("vfolder", "mkdir", name, "box", as_=email)
    os.chmod(Path(folder["views"]["rw"]) / "box", 0o333)  # through the view, as root
    node.cli.ok("vfolder", "upload", name, str(src), as_=email)
    backing = node.backing(folder)
    assert (backing / "box" / "new" / "f").read_bytes() == b"f"
    assert (backing / "box" / "a").read_bytes() == b"a"
    err = node.cli.fails("vfolder", "upload", name, str(src), code="path_exists", as_=email)
    assert err["details"]["path"] in ("box/a", "box/new/f")


def test_cli_archive_upload_of_a_large_tree_goes_in_rounds(
    node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tree past ``ARCHIVE_MAX_BYTES`` is sent in several rounds of archives, each into
    directories that exist by then: the same tree comes out."""
    alice = node.user()
    folder = node.folder(alice)
    src = tmp_path / "src"
    make_source(src)
    for i in range(12):
        sub = src / f"s{i % 3}" / f"t{i % 2}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i}").write_bytes(os.urandom(30 * KiB))
    targets: list[bytes] = []
    real = transfer._send_archive

    def spy(client: Any, base: str, where: str, members: list[Any], **kw: Any) -> None:
        targets.append(os.fsencode(where))
        real(client, base, where, members, **kw)

    monkeypatch.setattr(transfer, "ARCHIVE_MAX_BYTES", 64 * KiB)
    monkeypatch.setattr(transfer, "_send_archive", spy)
    node.cli.ok("vfolder", "upload", folder["name"], str(src), as_=alice["email"])
    assert len(targets) > 4 and targets[0] == b"" and len(set(targets)) > 3
    assert snapshot(node.backing(folder)) == expected(src, b"")


def test_cli_upload_of_named_files_lists_nothing(
    node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files named on the command line go one request each, as before: no listing of the
    directory they go into (which may be large), no archive."""
    from vfd.cli.client import VfdClient

    alice = node.user()
    folder = node.folder(alice)
    (tmp_path / "a.txt").write_bytes(b"a")
    (tmp_path / "b.txt").write_bytes(b"b")
    asked: list[str] = []
    real = VfdClient.get

    def spy(self: VfdClient, path: str, **kw: Any) -> dict[str, Any]:
        asked.append(path.rsplit("/", 1)[-1])
        return real(self, path, **kw)

    monkeypatch.setattr(VfdClient, "get", spy)
    monkeypatch.setattr(tarsend.TarBody, "send", None)  # no archive may be sent
    names = [str(tmp_path / "a.txt"), str(tmp_path / "b.txt")]
    node.cli.ok("vfolder", "upload", folder["name"], *names, "--dest", "in", as_=alice["email"])
    assert sorted(asked) == ["upload", "upload"]
    assert (node.backing(folder) / "in" / "b.txt").read_bytes() == b"b"


def test_cli_archive_upload_to_a_new_top_level_dest_makes_it_in_the_archive(
    node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``--dest`` that is a new directory at the folder's root comes with the archive (it
    appears with its tree, no ``mkdir`` first); a deeper one is made first, as ever."""
    alice = node.user()
    folder = node.folder(alice)
    src = tmp_path / "src"
    make_source(src)
    made: list[str] = []
    targets: list[str] = []
    real_post, real_send = VfdClient.post, transfer._send_archive

    def spy_post(client: VfdClient, path: str, *args: Any, **kw: Any) -> Any:
        if path.endswith("/mkdir"):
            made.append(args[0]["path"])
        return real_post(client, path, *args, **kw)

    def spy_send(client: Any, base: str, where: str, members: list[Any], **kw: Any) -> None:
        targets.append(where)
        real_send(client, base, where, members, **kw)

    monkeypatch.setattr(VfdClient, "post", spy_post)
    monkeypatch.setattr(transfer, "_send_archive", spy_send)
    node.cli.ok("vfolder", "upload", folder["name"], str(src), "--dest", "new", as_=alice["email"])
    assert (made, targets) == ([], [""])
    got = snapshot(node.backing(folder))
    assert got == {b"new": ("dir", 0o755, b""), **expected(src, b"new/")}
    node.cli.ok("vfolder", "upload", folder["name"], str(src), "--dest", "a/b", as_=alice["email"])
    assert (made, targets) == (["a/b"], ["", "a/b"])
    assert snapshot(node.backing(folder) / "a")[b"b/src/top.txt"] == ("file", 0o644, b"top")
