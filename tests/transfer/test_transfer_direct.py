"""The direct data path of uploads and downloads (docs/transfers.md): the bytes move on the
backing file mountd hands over, under a quota grant it settles; the rules stay mountd's."""

from __future__ import annotations

import errno
import io
import os
import socket
import tarfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from filenode import Node

from vfd.errors import VfdError
from vfd.mountctl import MountdClient

KiB = 1 << 10
MiB = 1 << 20


def health(node: Node) -> dict[str, Any]:
    with MountdClient(node.config.mountd_socket) as mountd:
        return mountd.call("health")


def view(node: Node, folder: dict[str, Any], which: str = "rw") -> Path:
    return node.config.mount_point / which / folder["id"]


def upload_url(folder: dict[str, Any], **params: object) -> str:
    return f"/v1/vfolders/{folder['name']}/upload?{urlencode(params)}"


def raw_request(node: Node, method: str, url: str, as_: str, length: int) -> socket.socket:
    """A connection on which the head of a request with a body of ``length`` was sent."""
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(10)
    sock.connect(str(node.config.api_socket))
    head = f"{method} {url} HTTP/1.1\r\nHost: vfd\r\nX-Vfd-Act-As: {as_}\r\n"
    sock.sendall(f"{head}Content-Length: {length}\r\n\r\n".encode())
    return sock


def status_of(sock: socket.socket) -> tuple[int, bytes]:
    """The status and the whole answer (head and body) on ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        got = sock.recv(65536)
        assert got, data
        data += got
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        got = sock.recv(65536)
        assert got, data
        body += got
    return int(data.split(b" ", 2)[1]), head + b"\r\n\r\n" + body


def wait_for(what: str, check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def fd_targets(pid: int) -> list[str]:
    """What each fd of ``pid`` refers to, with its number."""
    targets = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets.append(f"{fd} {os.readlink(f'/proc/{pid}/fd/{fd}')}")
        except FileNotFoundError:
            continue
    return targets


def part_files(node: Node, folder: dict[str, Any]) -> list[str]:
    return sorted(p.name for p in node.backing(folder).iterdir() if p.name.endswith(".part"))


def test_direct_transfers_move_no_bytes_through_fuse(node: Node) -> None:
    alice = node.user()
    folder = node.folder(alice)
    payload = os.urandom(8 * MiB + 5)
    counts = health(node)["requests"]
    with node.http(alice["email"]) as http:
        r = http.put(
            upload_url(folder, path="big.bin", key="direct-up-1", size=len(payload)),
            content=payload,
        )
        assert r.json()["complete"] is True, r.text
        r = http.put(
            upload_url(
                folder, path="fast.bin", key="direct-up-2", size=len(payload), durable="false"
            ),
            content=payload,
        )
        assert r.json()["complete"] is True, r.text
        got = http.get(f"/v1/vfolders/{folder['name']}/download", params={"path": "big.bin"})
        assert got.content == payload
        part = http.get(
            f"/v1/vfolders/{folder['name']}/download",
            params={"path": "big.bin"},
            headers={"Range": f"bytes={5 * MiB}-"},
        )
        assert part.status_code == 206 and part.content == payload[5 * MiB :]
    after = health(node)
    assert after["direct_grants"] == 0
    for op in ("write", "read"):  # not one FUSE request carried the data
        assert after["requests"].get(op, 0) == counts.get(op, 0), op
    assert (node.backing(folder) / "big.bin").read_bytes() == payload
    st = (node.backing(folder) / "big.bin").stat()
    assert (st.st_uid, st.st_gid) == (alice["uid"], alice["gid"])
    assert node.usage(folder)["used_bytes"] == 2 * len(payload)
    # the control: writing through the view does count FUSE writes
    (view(node, folder) / "control.bin").write_bytes(b"x" * MiB)
    assert health(node)["requests"]["write"] > after["requests"].get("write", 0)


def test_direct_upload_past_the_quota_is_refused_before_a_byte_is_stored(node: Node) -> None:
    alice = node.user()
    folder = node.folder(alice)
    node.cli.ok("admin", "quota", "set", "--user", alice["email"], "--bytes", "1M")
    url = upload_url(folder, path="big.bin", key="quota-up-1", size=3 * MiB)
    with raw_request(node, "PUT", url, alice["email"], 3 * MiB) as sock:
        sock.sendall(os.urandom(64 * KiB))
        status, answer = status_of(sock)  # answered with most of the body unsent
    assert status == 507 and b"quota_exceeded" in answer, answer
    assert part_files(node, folder) == []
    assert node.usage(folder)["used_bytes"] == 0

    # an upload holds its whole remaining size from its start: a second one that would
    # pass the limit with it is refused while the first has stored nothing yet
    node.cli.ok("admin", "quota", "set", "--user", alice["email"], "--bytes", "3M")
    first = upload_url(folder, path="a.bin", key="quota-up-a", size=2 * MiB)
    payload = os.urandom(2 * MiB)
    with raw_request(node, "PUT", first, alice["email"], len(payload)) as sock:
        sock.sendall(payload[: 100 * KiB])
        wait_for("the reservation", lambda: node.usage(folder)["used_bytes"] == 2 * MiB)
        with node.http(alice["email"]) as http:
            r = http.put(
                upload_url(folder, path="b.bin", key="quota-up-b", size=2 * MiB),
                content=os.urandom(2 * MiB),
            )
        assert r.status_code == 507, r.text
        assert r.json()["error"]["code"] == "quota_exceeded"
        sock.sendall(payload[100 * KiB :])
        status, answer = status_of(sock)
        assert status == 200, answer
    assert (node.backing(folder) / "a.bin").read_bytes() == payload
    assert part_files(node, folder) == []
    usage = node.usage(folder)
    assert (usage["used_bytes"], usage["used_files"]) == (2 * MiB, 1)


def test_direct_grants_are_settled_exactly_and_with_their_connection(node: Node) -> None:
    alice = node.user()
    folder = node.folder(alice)
    rw = view(node, folder)
    (rw / "g.bin").write_bytes(b"0123456789")
    fd = os.open(rw / "g.bin", os.O_WRONLY)
    try:
        ino = os.fstat(fd).st_ino
        # settled explicitly: exact at the answer, and the views see the new size at once
        with MountdClient(node.config.mountd_socket) as mountd:
            result, bfd = mountd.call_fd("backing_open", ino=ino, mode="write", reserve_bytes=MiB)
            try:
                assert node.usage(folder)["used_bytes"] == 10 + MiB
                os.pwrite(bfd, b"abcde", 10)
            finally:
                os.close(bfd)
            settled = mountd.call("backing_settle", grant=result["grant"])
            assert settled == {"size": 15, "grown": 5}
            assert node.usage(folder)["used_bytes"] == 15
            assert os.stat(rw / "g.bin").st_size == 15
            assert (view(node, folder, "ro") / "g.bin").read_bytes() == b"0123456789abcde"
            with pytest.raises(VfdError) as refused:
                mountd.call("backing_settle", grant=result["grant"])
            assert refused.value.code.value == "not_found"
        # left unsettled: mountd settles it when the connection closes
        with MountdClient(node.config.mountd_socket) as mountd:
            mountd.call_fd("backing_open", ino=ino, mode="write", reserve_bytes=MiB)[1]
            bfd = mountd.call_fd("backing_open", ino=ino, mode="write", reserve_bytes=10)[1]
            os.pwrite(bfd, b"z" * 1000, 15)
            os.close(bfd)
            assert health(node)["direct_grants"] == 2
        wait_for("the grants settled", lambda: health(node)["direct_grants"] == 0)
        assert node.usage(folder)["used_bytes"] == 1015
        wait_for("the new size", lambda: os.stat(rw / "g.bin").st_size == 1015)
    finally:
        os.close(fd)
    assert node.usage(folder)["used_bytes"] == (node.backing(folder) / "g.bin").stat().st_size


def test_direct_backing_open_refuses_what_the_view_would(node: Node) -> None:
    alice = node.user()
    folder = node.folder(alice)
    node.cli.ok("admin", "quota", "set", "--user", alice["email"], "--bytes", "1M")
    (view(node, folder) / "f.bin").write_bytes(b"data")
    (view(node, folder) / "d").mkdir()
    ro = os.open(view(node, folder, "ro") / "f.bin", os.O_RDONLY)
    rw = os.open(view(node, folder) / "f.bin", os.O_WRONLY)
    dfd = os.open(view(node, folder) / "d", os.O_RDONLY | os.O_DIRECTORY)
    try:
        with MountdClient(node.config.mountd_socket) as mountd:

            def refused(ino: int, mode: str, **fields: int) -> str:
                with pytest.raises(VfdError) as exc:
                    mountd.call_fd("backing_open", ino=ino, mode=mode, **fields)
                return exc.value.code.value

            assert refused(os.fstat(ro).st_ino, "write") == "read_only"
            fds_before = len(os.listdir("/proc/self/fd"))  # the connection's socket included
            assert refused(os.fstat(dfd).st_ino, "read") == "not_a_regular_file"
            assert refused(os.fstat(rw).st_ino, "append") == "invalid_argument"
            assert refused(os.fstat(rw).st_ino + 2**40, "read") == "path_not_found"
            assert refused(os.fstat(rw).st_ino, "write", reserve_bytes=2 * MiB) == "quota_exceeded"
            assert node.usage(folder)["used_bytes"] == 4
            assert len(os.listdir("/proc/self/fd")) == fds_before  # no fd came with a refusal
            _, bfd = mountd.call_fd("backing_open", ino=os.fstat(ro).st_ino, mode="read")
            try:
                assert os.pread(bfd, 10, 0) == b"data"
                with pytest.raises(OSError) as not_writable:
                    os.pwrite(bfd, b"x", 0)
                assert not_writable.value.errno == errno.EBADF
            finally:
                os.close(bfd)
    finally:
        for fd in (ro, rw, dfd):
            os.close(fd)
    # a file nobody holds open through the mount is not handed out
    (view(node, folder) / "closed.bin").write_bytes(b"x")
    ino = os.stat(view(node, folder) / "closed.bin").st_ino
    with MountdClient(node.config.mountd_socket) as mountd, pytest.raises(VfdError) as exc:
        mountd.call_fd("backing_open", ino=ino, mode="read")
    assert exc.value.code.value == "path_not_found"


def test_direct_aborted_uploads_leave_nothing_held_in_mountd(node: Node) -> None:
    alice = node.user()
    folder = node.folder(alice)
    pid = node.mountd_pid()
    assert pid is not None
    with node.http(alice["email"]) as http:  # warm up: the folder's inodes are known
        http.put(upload_url(folder, path="w.bin", key="abort-warm", size=1), content=b"w")
    before = fd_targets(pid)
    for n in range(3):
        url = upload_url(folder, path="big.bin", key="abort-up-1", size=8 * MiB, offset=0)
        with raw_request(node, "PUT", url, alice["email"], 8 * MiB) as sock:
            sock.sendall(os.urandom(2 * MiB + n))
            wait_for("the grant", lambda: health(node)["direct_grants"] == 1)
        wait_for("the grant settled", lambda: health(node)["direct_grants"] == 0)

    # what may be left is the part file's inode as the kernel still knows it (one O_PATH
    # fd); each grant held a descriptor of its own, closed when it was settled
    def only_the_inode() -> bool:
        new = sorted(set(fd_targets(pid)) - set(before))
        return len(new) <= 1 and all(t.endswith("abort-up-1.part") for t in new)

    wait_for("mountd's fds back", only_the_inode)
    part = node.backing(folder) / ".vfd-upload-abort-up-1.part"
    usage = node.usage(folder)
    assert usage["used_bytes"] == 1 + part.stat().st_size
    assert usage["used_files"] == 2


def test_direct_small_files_and_sync(node: Node) -> None:
    """Files under the direct path's threshold go through the view (no grant, no call to
    mountd); ``durable=false`` uploads are made durable by one ``POST .../sync``."""
    alice = node.user()
    folder = node.folder(alice)
    bob = node.user()
    counts = health(node)["requests"]
    with node.http(alice["email"]) as http:
        for i in range(3):
            r = http.put(
                upload_url(folder, path=f"s{i}.txt", key=f"small-up-{i}", size=5, durable="false"),
                content=b"hello",
            )
            assert r.json()["complete"] is True, r.text
        got = http.get(f"/v1/vfolders/{folder['name']}/download", params={"path": "s1.txt"})
        assert got.content == b"hello"
        r = http.post(f"/v1/vfolders/{folder['name']}/sync")
        assert r.status_code == 200, r.text
        assert r.json() == {"vfolder": folder["name"], "synced": True}
    after = health(node)["requests"]
    assert after.get("write", 0) - counts.get("write", 0) >= 3  # through the view
    assert node.usage(folder)["used_bytes"] == 15
    with node.http(bob["email"]) as http:  # only those who may write to it
        r = http.post(f"/v1/vfolders/{folder['name']}/sync")
        assert r.status_code == 404, r.text
    with MountdClient(node.config.mountd_socket) as mountd, pytest.raises(VfdError) as exc:
        mountd.call("sync", vfid="0" * 32)
    assert exc.value.code.value == "vfolder_not_found"


def test_direct_archive_walks_the_backing_tree_as_the_user(node: Node) -> None:
    alice = node.user()
    folder = node.folder(alice)
    rw = view(node, folder)
    (rw / "d" / "sub").mkdir(parents=True)
    (rw / "d" / "sub" / "f.txt").write_bytes(b"hello")
    (rw / "d" / "big.bin").write_bytes(b"b" * (2 * MiB))
    os.symlink("sub/f.txt", rw / "d" / "link")
    (rw / "d" / "private").mkdir()
    (rw / "d" / "private" / "p.txt").write_bytes(b"not for alice")
    (rw / "d" / "hidden.txt").write_bytes(b"not for alice either")
    os.chown(rw / "d" / "private", 54321, 54321)
    os.chmod(rw / "d" / "private", 0o700)
    os.chown(rw / "d" / "hidden.txt", 54321, 54321)
    os.chmod(rw / "d" / "hidden.txt", 0o600)
    for p in ("d", "d/sub", "d/sub/f.txt", "d/big.bin", "d/link"):
        os.chown(rw / p, alice["uid"], alice["gid"], follow_symlinks=False)
    counts = health(node)["requests"]
    with node.http(alice["email"]) as http:
        r = http.get(
            f"/v1/vfolders/{folder['name']}/download", params={"path": "d", "archive": "true"}
        )
    assert r.status_code == 200, r.text
    with tarfile.open(fileobj=io.BytesIO(r.content)) as tar:
        names = sorted(tar.getnames())
        assert tar.extractfile("d/sub/f.txt").read() == b"hello"  # type: ignore[union-attr]
        assert tar.extractfile("d/big.bin").read() == b"b" * (2 * MiB)  # type: ignore[union-attr]
        assert tar.getmember("d/link").linkname == "sub/f.txt"
    # what alice may not read is left out, as through the view
    assert names == ["d", "d/big.bin", "d/link", "d/sub", "d/sub/f.txt"]
    assert health(node)["requests"].get("read", 0) == counts.get("read", 0)


def _tar(entries: list[tuple[str, bytes | None]], *, mode: int = 0o640) -> bytes:
    """A tar archive of files (bytes) and directories (None), in order."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o750
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), mode
                tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_archive_upload_unpacks_a_tree_at_once_as_the_user(node: Node) -> None:
    alice = node.user()
    folder = node.folder(alice)
    files = [(f"src/d{i % 7}/f{i}.txt", os.urandom(4096)) for i in range(200)]
    body = _tar([("src", None), *files, ("src/big.bin", os.urandom(3 * MiB))])
    url = f"/v1/vfolders/{folder['name']}/upload-archive"
    counts = health(node)["requests"]
    with node.http(alice["email"]) as http:
        r = http.put(url, params={"key": "tree-up-1"}, content=body)
        after = health(node)
        for op in ("create", "write", "mkdir"):  # made in the backing tree, not through FUSE
            assert after["requests"].get(op, 0) == counts.get(op, 0), op
        assert after["direct_grants"] == 0
        assert r.status_code == 200, r.text
        made = r.json()
        assert (made["entries"], made["files"], made["durable"]) == (["src"], 201, True)
        assert made["dirs"] == 8 and made["skipped"] == []
        # an existing top-level name is refused, and nothing of the second archive stays
        again = http.put(url, params={"key": "tree-up-2"}, content=_tar([("src/x", b"x")]))
        assert again.status_code == 409 and again.json()["error"]["code"] == "path_exists"
        bad = http.put(url, params={"key": "tree-up-3"}, content=_tar([("../x", b"x")]))
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_path"
    backing = node.backing(folder)
    assert sorted(p.name for p in backing.iterdir()) == ["src"]
    for name, data in files:
        st = (backing / name).stat()
        assert (backing / name).read_bytes() == data
        assert (st.st_uid, st.st_mode & 0o777, st.st_mtime) == (alice["uid"], 0o640, 1.7e9)
    assert (backing / "src").stat().st_mode & 0o777 == 0o750
    usage = node.usage(folder)
    assert usage["used_bytes"] == 200 * 4096 + 3 * MiB
    assert usage["used_files"] == 1 + 7 + 201


def test_archive_upload_past_the_quota_leaves_nothing(node: Node) -> None:
    alice = node.user()
    folder = node.folder(alice)
    node.cli.ok("admin", "quota", "set", "--user", alice["email"], "--bytes", "1M")
    body = _tar([(f"t/f{i}", os.urandom(100 * KiB)) for i in range(20)])
    with node.http(alice["email"]) as http:
        r = http.put(
            f"/v1/vfolders/{folder['name']}/upload-archive",
            params={"key": "tree-quota-1", "durable": "false"},
            content=body,
        )
    assert r.status_code == 507 and r.json()["error"]["code"] == "quota_exceeded", r.text
    assert list(node.backing(folder).iterdir()) == []
    assert node.usage(folder)["used_bytes"] == 0


def test_archive_upload_fits_a_quota_smaller_than_one_grant_chunk(node: Node) -> None:
    """Less room left than one chunk of a tree grant (64 MiB, 4,096 files): the archive
    still goes in when what it holds fits."""
    alice = node.user()
    folder = node.folder(alice)
    node.cli.ok("admin", "quota", "set", "--user", alice["email"], "--bytes", "2M")
    files = [(f"s/f{i}", os.urandom(10 * KiB)) for i in range(5)]
    with node.http(alice["email"]) as http:
        r = http.put(
            f"/v1/vfolders/{folder['name']}/upload-archive",
            params={"key": "tree-small-1", "durable": "false"},
            content=_tar(files),
        )
    assert r.status_code == 200, r.text
    for name, data in files:
        assert (node.backing(folder) / name).read_bytes() == data
    usage = node.usage(folder)
    assert usage["used_bytes"] >= 50 * KiB and usage["used_files"] == 6


def test_archive_upload_cut_short_leaves_nothing(node: Node) -> None:
    alice = node.user()
    folder = node.folder(alice)
    body = _tar([(f"t/f{i}", os.urandom(64 * KiB)) for i in range(64)])
    with node.http(alice["email"]) as http:  # warm up
        r = http.put(
            f"/v1/vfolders/{folder['name']}/upload-archive",
            params={"key": "tree-warm-1"},
            content=_tar([("w", b"w")]),
        )
        assert r.status_code == 200, r.text
        http.post(f"/v1/vfolders/{folder['name']}/remove", json={"paths": ["w"]})
    daemon, mountd = node.child_pid(b"vfd.daemon"), node.mountd_pid()
    assert mountd is not None
    before = {pid: len(fd_targets(pid)) for pid in (daemon, mountd)}
    for n in range(3):
        url = f"/v1/vfolders/{folder['name']}/upload-archive?key=tree-cut-{n}"
        with raw_request(node, "PUT", url, alice["email"], len(body)) as sock:
            sock.sendall(body[: len(body) // 2 + n])
            wait_for("the tree grant", lambda: health(node)["direct_grants"] == 1)
        wait_for("the grant settled", lambda: health(node)["direct_grants"] == 0)
    for pid, count in before.items():  # every fd of the transfers closed, on both sides
        wait_for(f"the fds of {pid}", lambda pid=pid, count=count: len(fd_targets(pid)) <= count)
    assert list(node.backing(folder).iterdir()) == []
    usage = node.usage(folder)
    assert (usage["used_bytes"], usage["used_files"]) == (0, 0)


def test_abandoned_archive_staging_directories_are_pruned(node: Node) -> None:
    """A staging directory left by an archive upload whose daemon went away (its grant was
    settled by counting it) is removed by the upload pruning, and its usage given back."""
    alice = node.user()
    folder = node.folder(alice)
    staging = view(node, folder) / ".vfd-upload-lostkey01.part"
    (staging / "t").mkdir(parents=True)
    (staging / "t" / "f").write_bytes(b"x" * 5000)
    old = time.time() - 8 * 24 * 3600
    os.utime(staging, (old, old))
    assert node.usage(folder)["used_bytes"] == 5000
    done = node.cli.json("admin", "uploads", "prune")
    assert [r["path"] for r in done["removed"] if r["vfolder"] == folder["name"]] == [
        ".vfd-upload-lostkey01.part"
    ]
    assert list(node.backing(folder).iterdir()) == []
    usage = node.usage(folder)
    assert (usage["used_bytes"], usage["used_files"]) == (0, 0)
