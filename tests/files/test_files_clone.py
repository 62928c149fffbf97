"""``vfd vfolder clone`` through a real node: mountd copies, the daemon follows, the CLI waits."""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

from filenode import Node, wait_until
from vfdcli import unique

from vfd.errors import ErrorCode, VfdError
from vfd.mountctl import MountdClient

DEADLINE = 120.0
FILL = 10_000
"""Files of the sources that are cancelled or fail midway: enough for a copy of seconds."""


def info(node: Node, name: str, as_: str) -> dict[str, Any]:
    folder: dict[str, Any] = node.cli.json("vfolder", "info", name, as_=as_)
    return folder


def wait_settled(node: Node, name: str, as_: str) -> dict[str, Any]:
    """The folder ``name`` once it has left ``cloning``."""

    def settled() -> dict[str, Any] | None:
        folder = info(node, name, as_)
        return folder if folder["status"] != "cloning" else None

    return wait_until(f"{name} to leave cloning", settled, DEADLINE)


def signature(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry below ``root``: type, mode, and content (data hash, link target), with
    hard links named by the first path of their inode."""
    out: dict[str, tuple[object, ...]] = {}
    first: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for entry in sorted(dirnames + filenames):
            path = Path(dirpath) / entry
            rel = str(path.relative_to(root))
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            elif stat.S_ISREG(st.st_mode):
                if st.st_nlink > 1 and st.st_ino in first:
                    out[rel] = ("hardlink", first[st.st_ino])
                    continue
                first[st.st_ino] = rel
                digest = hashlib.sha256()
                with open(path, "rb") as f:
                    while chunk := f.read(1 << 22):
                        digest.update(chunk)
                out[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_size, digest.hexdigest())
            else:
                out[rel] = ("other", stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode))
    return out


def build_tree(view: Path) -> None:
    """A source with every kind of entry, written through the folder's rw view."""
    (view / "a" / "b" / "c").mkdir(parents=True)
    (view / "a" / "b" / "c" / "deep.txt").write_text("deep\n")
    (view / "top.txt").write_bytes(b"top\n" * 1000)
    os.chmod(view / "top.txt", 0o640)
    (view / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(view / "run.sh", 0o755)
    (view / "private").mkdir(mode=0o700)
    (view / "private" / "key").write_text("k")
    os.chmod(view / "private" / "key", 0o600)
    os.symlink("top.txt", view / "link-in")
    os.symlink("../../top.txt", view / "a" / "b" / "link-up")
    os.symlink("/etc", view / "link-out")
    os.symlink("/etc/passwd", view / "a" / "passwd")
    os.link(view / "top.txt", view / "a" / "hard-top")
    os.mkfifo(view / "fifo", 0o640)
    os.setxattr(view / "top.txt", "user.note", b"hello")
    with open(view / "big.bin", "wb") as f:  # 200 MiB, mostly a hole
        f.seek(100 << 20)
        f.write(os.urandom(1 << 20))
        f.truncate(200 << 20)


def test_files_clone_copies_the_tree_exactly(node: Node) -> None:
    alice = node.user()
    a = alice["email"]
    source = node.folder(alice)
    build_tree(node.config.mount_point / "rw" / source["id"])
    new = unique("clone")
    out = node.cli.ok("vfolder", "clone", source["name"], new, "--wait", as_=a)
    assert f"Cloned folder {source['name']} into {new}" in out
    folder = info(node, new, a)
    assert folder["status"] == "ready" and folder["status_reason"] is None
    clone = folder["clone"]
    assert clone["source_id"] == source["id"] and clone["error"] is None
    assert (clone["done_bytes"], clone["done_files"]) == (
        clone["total_bytes"],
        clone["total_files"],
    )
    assert clone["total_bytes"] > 200 << 20
    assert signature(node.backing(source)) == signature(node.backing(folder))
    for path in [node.backing(folder), *node.backing(folder).rglob("*")]:
        st = path.lstat()
        assert (st.st_uid, st.st_gid) == (alice["uid"], alice["gid"]), path
    assert (
        not (node.backing(folder) / "link-out" / "passwd").is_file()
        or (node.backing(folder) / "link-out").is_symlink()
    )
    assert os.getxattr(node.backing(folder) / "top.txt", "user.note") == b"hello"
    # the usage the copy charged is what a recount finds
    rescan = node.cli.json("admin", "quota", "rescan", "--user", a)
    assert rescan["drifted"] == 0, rescan
    # the clone is a folder like any other
    view = node.config.mount_point / "rw" / folder["id"]
    (view / "new.txt").write_text("mine")
    assert (node.config.mount_point / "ro" / folder["id"] / "a" / "b" / "link-up").read_bytes() == (
        b"top\n" * 1000
    )
    text = node.cli.ok("vfolder", "info", new, as_=a)
    assert "clone progress" in text and "cloned from" in text


def fill(node: Node, folder: dict[str, Any], owner: str, *, files: int) -> None:
    """Many small files written straight into the backing tree (fast), then a rescan so that
    the counters know them: a source whose copy takes a while."""
    root = node.backing(folder)
    for d in range(files // 1000):
        sub = root / f"d{d:03}"
        sub.mkdir()
        for i in range(1000):
            (sub / f"f{i:04}").write_bytes(b"x" * 100)
    node.cli.ok("admin", "quota", "rescan", "--user", owner)


def folder_count(node: Node, folder: dict[str, Any]) -> int:
    from vfd.folders.quota import folder_roots

    return len(folder_roots(node.backing(folder).parents[2]))


def test_files_clone_rules_and_errors(node: Node) -> None:
    alice, bob = node.user(), node.user()
    a, b = alice["email"], bob["email"]
    source = node.folder(alice)
    name = source["name"]
    (node.config.mount_point / "rw" / source["id"] / "data.txt").write_text("shared data")
    node.cli.fails("vfolder", "clone", name, unique("c"), code="vfolder_not_found", as_=b)
    inv = node.cli.json("vfolder", "invite", name, b, "--permission", "ro", as_=a)
    node.cli.ok("vfolder", "accept", inv["invitations"][0]["id"], as_=b)
    error = node.cli.fails("vfolder", "clone", name, unique("c"), code="permission_denied", as_=b)
    assert "not cloneable" in error["message"]
    node.cli.ok("vfolder", "update", name, "--cloneable", as_=a)
    mine = unique("bobs")
    node.cli.ok("vfolder", "clone", name, mine, "--wait", "--usage-mode", "model", as_=b)
    cloned = info(node, mine, b)
    assert (cloned["owner"], cloned["usage_mode"], cloned["cloneable"]) == (b, "model", False)
    data = node.backing(cloned) / "data.txt"
    assert data.read_text() == "shared data"
    assert (data.stat().st_uid, data.stat().st_gid) == (bob["uid"], bob["gid"])
    # the owner may clone a folder that is not cloneable
    node.cli.ok("vfolder", "update", name, "--no-cloneable", as_=a)
    node.cli.ok("vfolder", "clone", name, unique("own"), "--wait", as_=a)
    # names, hosts, statuses
    node.cli.fails("vfolder", "clone", name, name, code="vfolder_exists", as_=a)
    node.cli.fails("vfolder", "clone", name, "..", code="invalid_name", as_=a)
    node.cli.fails(
        "vfolder", "clone", name, unique("c"), "--host", "mars", code="host_not_found", as_=a
    )
    node.cli.fails("vfolder", "clone-cancel", name, code="invalid_status", as_=a)
    with node.http(a) as http:
        r = http.post(f"/v1/vfolders/{name}/clone", json={"target_name": 5})
        assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_argument")
        r = http.post(f"/v1/vfolders/{name}/clone", json={"name": "x"})
        assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_argument")
        r = http.post(f"/v1/vfolders/{name}/clone", json={"target_name": "y", "usage_mode": "z"})
        assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_argument")
    node.cli.ok("vfolder", "delete", name, as_=a)
    node.cli.fails("vfolder", "clone", name, unique("c"), code="invalid_status", as_=a)


def test_files_clone_quota_too_small_is_refused_up_front(node: Node) -> None:
    alice = node.user()
    a = alice["email"]
    source = node.folder(alice)
    (node.config.mount_point / "rw" / source["id"] / "blob").write_bytes(b"b" * 300_000)
    before = node.usage(source)
    node.cli.ok("admin", "quota", "set", "--user", a, "--bytes", str(before["used_bytes"] + 1000))
    folders = folder_count(node, source)
    new = unique("c")
    error = node.cli.fails("vfolder", "clone", source["name"], new, code="quota_exceeded", as_=a)
    assert error["details"]["needed_bytes"] == 300_000
    node.cli.fails("vfolder", "info", new, code="vfolder_not_found", as_=a)
    assert folder_count(node, source) == folders
    after = node.usage(source)
    assert (after["used_bytes"], after["used_files"]) == (
        before["used_bytes"],
        before["used_files"],
    )
    # the files limit counts too
    node.cli.ok("admin", "quota", "set", "--user", a, "--bytes", "0", "--files", "1")
    node.cli.fails("vfolder", "clone", source["name"], new, code="quota_exceeded", as_=a)
    node.cli.ok("admin", "quota", "set", "--user", a, "--files", "0")
    node.cli.ok("vfolder", "clone", source["name"], new, "--wait", as_=a)


def wait_progress(node: Node, vfid: str) -> dict[str, Any]:
    """mountd's job once its copy has started (and not finished). Asked of mountd itself: the
    store's figures lag by up to the daemon's poll interval, and the copy is short."""

    def started() -> dict[str, Any] | None:
        with MountdClient(node.config.mountd_socket) as client:
            try:
                job = client.call("clone_status", vfid=vfid)
            except VfdError as exc:  # the folder is committed before mountd's job starts
                assert exc.code is ErrorCode.NOT_FOUND, exc
                return None
        return job if job["done_files"] > 0 else None

    job: dict[str, Any] = wait_until(f"progress of {vfid}", started, DEADLINE)
    assert job["state"] == "running", "the source was too small to catch the copy midway"
    return job


def test_files_clone_cancel_midway_leaves_an_error_folder_to_purge(node: Node) -> None:
    alice = node.user()
    a = alice["email"]
    source = node.folder(alice)
    fill(node, source, a, files=FILL)
    new = unique("c")
    started = node.cli.json("vfolder", "clone", source["name"], new, as_=a)
    assert started["status"] == "cloning"
    assert started["clone"]["total_files"] == FILL + FILL // 1000
    node.cli.fails("vfolder", "delete", new, code="invalid_status", as_=a)
    wait_progress(node, started["id"])
    out = node.cli.ok("vfolder", "clone-cancel", new, as_=a)
    assert f"Cancelled the clone into {new}" in out
    folder = info(node, new, a)
    assert folder["status"] == "clone-error"
    assert folder["status_reason"] == f"cancelled by {a}"
    assert 0 < folder["clone"]["done_files"] < folder["clone"]["total_files"]
    assert not (node.config.mount_point / "rw" / folder["id"]).exists()  # never attached
    assert "status reason" in node.cli.ok("vfolder", "info", new, as_=a)
    listed = node.cli.json("vfolder", "list", as_=a)["vfolders"]
    assert {f["name"]: f["status"] for f in listed}[new] == "clone-error"
    node.cli.fails("vfolder", "delete", new, code="invalid_status", as_=a)
    node.cli.fails("vfolder", "clone-cancel", new, code="invalid_status", as_=a)
    node.cli.ok("vfolder", "purge", new, "--confirm", new, as_=a)
    assert not node.backing(folder).exists()
    assert node.cli.json("admin", "quota", "rescan", "--user", a)["drifted"] == 0


def test_files_clone_wait_fails_when_the_quota_is_lowered_midway(node: Node) -> None:
    alice = node.user()
    a = alice["email"]
    source = node.folder(alice)
    fill(node, source, a, files=FILL)
    new = unique("c")
    with clone_waiting(node, a, source["name"], new) as waiting:
        try:
            wait_progress(node, appeared(node, a, new)["id"])
            used = node.usage(source)["used_files"]
            node.cli.ok("admin", "quota", "set", "--user", a, "--files", str(used))
            out, err = waiting.communicate(timeout=DEADLINE)
        finally:
            if waiting.poll() is None:
                waiting.kill()
    assert waiting.returncode == 1, (out, err)
    assert err.startswith(f"error: cloning {source['name']} into {new} failed: "), err
    assert err.rstrip().endswith("[quota_exceeded]"), err
    folder = info(node, new, a)
    assert folder["status"] == "clone-error" and folder["clone"]["error"] == "quota_exceeded"
    assert "Disk quota exceeded" in folder["status_reason"]
    node.cli.ok("admin", "quota", "set", "--user", a, "--files", "0")
    node.cli.ok("vfolder", "purge", new, "--confirm", new, as_=a)
    assert node.cli.json("admin", "quota", "rescan", "--user", a)["drifted"] == 0


def clone_waiting(node: Node, as_: str, source: str, new: str) -> subprocess.Popen[str]:
    """``vfd vfolder clone SOURCE NEW --wait`` as a process of its own."""
    vfd = Path(sys.executable).parent / "vfd"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VFD_")}
    return subprocess.Popen(
        [str(vfd), "--as", as_, "vfolder", "clone", source, new, "--wait"],
        env={**env, **node.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def appeared(node: Node, as_: str, name: str) -> dict[str, Any]:
    """The folder ``name`` once the daemon has it."""
    with node.http(as_) as http:
        found = wait_until(
            f"{name} to appear",
            lambda: (r := http.get(f"/v1/vfolders/{name}")).is_success and r,
            DEADLINE,
        )
    folder: dict[str, Any] = found.json()
    return folder


def test_files_clone_survives_a_daemon_crash(node: Node) -> None:
    """mountd keeps copying while the daemon is down; the restarted daemon (``vfd up``
    restarts it) finds the job again and makes the folder ready, and ``--wait`` waits it out."""
    alice = node.user()
    a = alice["email"]
    source = node.folder(alice)
    fill(node, source, a, files=FILL)
    new = unique("c")
    with clone_waiting(node, a, source["name"], new) as waiting:
        try:
            assert waiting.stdout is not None
            first = waiting.stdout.readline()  # the clone request has been answered
            assert first.startswith(f"Cloning folder {source['name']} into {new}"), first
            wait_progress(node, appeared(node, a, new)["id"])
            old = node.child_pid(b"vfd.daemon")
            os.kill(old, signal.SIGKILL)
            out, err = waiting.communicate(timeout=DEADLINE)
        finally:
            if waiting.poll() is None:
                waiting.kill()
            node.wait_ready()  # the daemon is back, for the next test
    # --wait rode out the daemon's absence
    assert waiting.returncode == 0, (out, err)
    assert f"Cloned folder {source['name']} into {new}" in out
    folder = info(node, new, a)
    assert node.child_pid(b"vfd.daemon") != old
    assert folder["status"] == "ready", folder
    assert signature(node.backing(source)) == signature(node.backing(folder))
    assert node.cli.json("admin", "quota", "rescan", "--user", a)["drifted"] == 0


def test_files_clone_lost_with_mountd_ends_in_clone_error(node: Node) -> None:
    """mountd dying mid-clone (``vfd up`` restarts it) loses the copy: the folder ends in
    ``clone-error`` with the reason, is never ready, and purging it leaves the counters exact."""
    alice = node.user()
    a = alice["email"]
    source = node.folder(alice)
    fill(node, source, a, files=FILL)
    new = unique("c")
    started = node.cli.json("vfolder", "clone", source["name"], new, as_=a)
    wait_progress(node, started["id"])
    os.kill(node.child_pid(b"vfd.fuse"), signal.SIGKILL)
    folder = wait_settled(node, new, a)
    assert folder["status"] == "clone-error", folder
    assert folder["clone"]["error"] == "mountd_unavailable"
    assert "mountd restarted" in folder["status_reason"]
    node.wait_ready()  # mountd serves again
    node.cli.ok("vfolder", "purge", new, "--confirm", new, as_=a)
    assert node.cli.json("admin", "quota", "rescan", "--user", a)["drifted"] == 0
