"""Folders mounted into sessions, with real containers (docs/session-mounts.md).

Each test makes its own users (automount folders are mounted into every session of a user),
runs ``vfd-test/busybox`` through ``POST /v1/sessions`` (or ``vfd run``), and reads what the
container saw from the session's logs or from the folder afterwards.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sessionapi import FINAL, destroy, post, refused, run_sh, start
from sessionnode import IMAGE, SessionNode

from vfd.mountctl import MountdClient

KiB = 1024
MiB = 1024 * KiB


def post_sh(node: SessionNode, email: str, mounts: list[str], script: str) -> httpx.Response:
    """``POST /v1/sessions`` of ``sh -c script`` with ``mounts``; the raw answer."""
    return post(node, email, image=IMAGE, command=["sh", "-c", script], mounts=mounts)


def download(node: SessionNode, email: str, folder: str, path: str, dest: Path) -> bytes:
    dest.mkdir(parents=True, exist_ok=True)
    node.cli.ok("vfolder", "download", folder, path, "--dest", str(dest), as_=email)
    return (dest / Path(path).name).read_bytes()


def test_session_mounts_rw_folder_persists_owned_by_the_user(
    node: SessionNode, tmp_path: Path
) -> None:
    alice = node.user()
    a = alice["email"]
    folder = node.folder(alice, "f1")
    ended, out, err = run_sh(
        node,
        a,
        ["f1"],
        "echo hi > /home/work/f1/x && mkdir /home/work/f1/d && echo deep > /home/work/f1/d/y"
        " && stat -c %u:%g /home/work/f1/x && id -u",
    )
    assert ended["exit_code"] == 0, err
    assert out.split() == [f"{alice['uid']}:{alice['gid']}", str(alice["uid"])]
    [mount] = ended["mounts"]
    assert (mount["folder"], mount["target"], mount["permission"], mount["automount"]) == (
        "f1",
        "/home/work/f1",
        "rw",
        False,
    )
    assert download(node, a, "f1", "x", tmp_path / "1") == b"hi\n"
    assert download(node, a, "f1", "d/y", tmp_path / "2") == b"deep\n"
    backing = node.backing(folder)
    for path in (backing / "x", backing / "d", backing / "d" / "y"):
        assert (path.stat().st_uid, path.stat().st_gid) == (alice["uid"], alice["gid"])


def test_session_mounts_vfd_run_writes_into_the_folder(node: SessionNode, tmp_path: Path) -> None:
    alice = node.user()
    a = alice["email"]
    node.folder(alice, "f1")
    done = node.run(
        "run", "--rm", "-m", "f1:out", IMAGE, "sh", "-c", "echo hi > /home/work/out/x", as_=a
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert download(node, a, "f1", "x", tmp_path) == b"hi\n"


def test_session_mounts_write_past_quota_is_edquot(node: SessionNode) -> None:
    alice = node.user()
    a = alice["email"]
    node.folder(alice, "f1")
    node.cli.ok("admin", "quota", "set", "--user", a, "--bytes", str(MiB))
    _, out, err = run_sh(
        node,
        a,
        ["f1"],
        "dd if=/dev/zero of=/home/work/f1/big bs=64k count=64; echo rc=$?; ls -l /home/work/f1/big",
    )
    assert "Disk quota exceeded" in err, (out, err)
    assert "rc=0" not in out
    with node.http(a) as http:
        usage = http.get("/v1/vfolders/f1/usage").json()
    assert usage["used_bytes"] <= MiB, usage


def test_session_mounts_df_shows_the_quota(node: SessionNode) -> None:
    with MountdClient(node.config.mountd_socket) as client:
        fast_path = client.call("health")["fast_path"]
    if not fast_path["on"]:
        print(f"df check skipped: mountd's fast path is off: {fast_path['reason']}")
        pytest.skip(f"mountd's fast path is off: {fast_path['reason']}")
    alice = node.user()
    a = alice["email"]
    node.folder(alice, "f1")
    node.cli.ok("admin", "quota", "set", "--user", a, "--bytes", str(64 * MiB))
    _, out, err = run_sh(node, a, ["f1"], "df -P /home/work/f1 | tail -1")
    size_kib = int(out.split()[1])
    assert size_kib == 64 * MiB // KiB, (out, err)


def test_session_mounts_ro_gives_erofs(node: SessionNode) -> None:
    alice, bob = node.user(), node.user()
    a, b = alice["email"], bob["email"]
    node.folder(alice, "mine")
    shared = node.folder(alice)["name"]
    node.share(alice, shared, bob, "ro")

    ended, out, err = run_sh(
        node, a, ["mine:ro"], "ls /home/work/mine; touch /home/work/mine/x; echo rc=$?"
    )
    assert "Read-only file system" in err, (out, err)
    assert "rc=1" in out
    assert ended["mounts"][0]["permission"] == "ro"

    ended, out, err = run_sh(
        node, b, [f"{shared}:in:ro"], "ls /home/work/in; echo x > /home/work/in/x; echo rc=$?"
    )
    assert "Read-only file system" in err, (out, err)
    assert "rc=0" not in out

    before = node.containers()
    error = refused(post_sh(node, b, [f"{shared}:in"], "true"), 403, "permission_denied")
    assert "read-only for you; mount it with :ro" in error["message"]
    error = refused(post_sh(node, b, [f"{shared}:rw"], "true"), 403, "permission_denied")
    with node.http(b) as http:
        mine = http.get("/v1/sessions", params={"all": "true"}).json()["sessions"]
    assert len(mine) == 1  # only the ro session above
    assert node.containers() == before


def test_session_mounts_no_other_folder_is_visible(node: SessionNode) -> None:
    alice, bob = node.user(), node.user()
    a = alice["email"]
    mounted = node.folder(alice, "a1")
    hidden = [node.folder(alice, "a2"), node.folder(bob, "b1")]
    mount_point = mounted["views"]["rw"].rsplit("/", 2)[0]
    probes = [mount_point] + [f for h in hidden for f in h["views"].values()]
    script = (
        "ls -A /home/work; echo ---; cat /proc/self/mountinfo; echo ---; "
        + "; ".join(f"test -e '{p}' && echo 'VISIBLE {p}'" for p in probes)
        + "; true"
    )
    _, out, _ = run_sh(node, a, ["a1"], script)
    listing, mountinfo, probed = out.split("---\n")
    names = listing.split()
    assert [n for n in names if not n.startswith(".")] == ["a1"], out
    assert "a2" not in names and "b1" not in names
    assert "VISIBLE" not in probed, probed
    assert mounted["id"] in mountinfo  # the bind's root in the mount names the folder's id
    for folder in hidden:
        assert folder["id"] not in mountinfo, mountinfo
    assert mount_point not in mountinfo


def test_session_mounts_bad_targets_refused_and_nothing_stored(node: SessionNode) -> None:
    alice = node.user()
    a = alice["email"]
    node.folder(alice, "f")
    node.folder(alice, "g")
    node.folder(alice, "gone")
    node.cli.ok("vfolder", "delete", "gone", as_=a)
    before = node.containers()
    for mounts, why in [
        (["f:/proc"], "reserved"),
        (["f:/etc/x"], "reserved"),
        (["f:/"], "reserved"),
        (["f:/home/work"], "session's home"),
        (["f:../x"], "'..'"),
        (["f:/data/../etc"], "'..'"),
        (["f:a:b"], "too many ':'"),
        (["f:"], "empty"),
        ([""], "empty"),
        (["f:/data", "g:/data/sub"], "lies inside /data"),
        (["f:x", "g:x"], "also the target"),
        (["f", "g:f"], "also the target"),
    ]:
        error = refused(post_sh(node, a, mounts, "true"), 400, "invalid_mount")
        assert why in error["message"], (mounts, error)
    refused(post_sh(node, a, ["nosuch"], "true"), 404, "vfolder_not_found")
    error = refused(post_sh(node, a, ["gone"], "true"), 409, "invalid_status")
    assert "trash" in error["message"]
    with node.http(a) as http:
        assert http.get("/v1/sessions", params={"all": "true"}).json()["sessions"] == []
    assert node.containers() == before


def test_session_mounts_automount_folders(node: SessionNode, tmp_path: Path) -> None:
    alice = node.user()
    a = alice["email"]
    for name in ("f", ".local", ".linuxbrew"):
        node.folder(alice, name)
    ended, out, err = run_sh(
        node,
        a,
        ["f"],
        "echo l > /home/work/.local/a && echo b > /home/linuxbrew/.linuxbrew/b && echo ok",
    )
    assert out == "ok\n", err
    got = {(m["folder"], m["target"], m["permission"], m["automount"]) for m in ended["mounts"]}
    assert got == {
        ("f", "/home/work/f", "rw", False),
        (".local", "/home/work/.local", "rw", True),
        (".linuxbrew", "/home/linuxbrew/.linuxbrew", "rw", True),
    }
    assert download(node, a, ".local", "a", tmp_path / "1") == b"l\n"
    assert download(node, a, ".linuxbrew", "b", tmp_path / "2") == b"b\n"

    # named in the request: mounted as asked, once
    ended, out, err = run_sh(
        node, a, [".linuxbrew:ro"], "touch /home/linuxbrew/.linuxbrew/c; echo rc=$?"
    )
    assert "Read-only file system" in err
    got = {(m["folder"], m["target"], m["permission"], m["automount"]) for m in ended["mounts"]}
    assert got == {
        (".local", "/home/work/.local", "rw", True),
        (".linuxbrew", "/home/linuxbrew/.linuxbrew", "ro", False),
    }

    # their targets take part in the overlap check
    error = refused(post_sh(node, a, ["f:/home/linuxbrew"], "true"), 400, "invalid_mount")
    assert ".linuxbrew" in error["message"]
    ended, out, err = run_sh(node, a, ["f:/home/linuxbrew", ".linuxbrew:/opt/brew"], "echo ok")
    assert out == "ok\n", err

    # trashed dot-folders are not mounted
    node.cli.ok("vfolder", "delete", ".local", as_=a)
    ended, out, err = run_sh(node, a, [], "test -e /home/work/.local; echo rc=$?")
    assert out == "rc=1\n", err
    assert [m["folder"] for m in ended["mounts"]] == [".linuxbrew"]


def test_session_mounts_ssh_folder_at_home_ssh(node: SessionNode, tmp_path: Path) -> None:
    """A ``.ssh`` folder is an automount folder like any other: at ``/home/work/.ssh``, so
    keys written there in a session stay in it (and open the user's SFTP apps)."""
    alice = node.user()
    a = alice["email"]
    node.folder(alice, ".ssh")
    ended, out, err = run_sh(
        node, a, [], "echo ssh-ed25519 AAAA k > /home/work/.ssh/authorized_keys && echo ok"
    )
    assert out == "ok\n", err
    got = {(m["folder"], m["target"], m["permission"], m["automount"]) for m in ended["mounts"]}
    assert got == {(".ssh", "/home/work/.ssh", "rw", True)}
    assert download(node, a, ".ssh", "authorized_keys", tmp_path / "k") == b"ssh-ed25519 AAAA k\n"


def test_session_mounts_folder_in_use_cannot_be_renamed_trashed_or_purged(
    node: SessionNode,
) -> None:
    alice, bob = node.user(), node.user()
    a, b = alice["email"], bob["email"]
    node.folder(alice, "busy")
    shared = node.folder(alice)["name"]
    node.share(alice, shared, bob)
    own = start(node, a, ["sleep", "600"], mounts=["busy"])
    other = start(node, b, ["sleep", "600"], mounts=[shared])
    node.wait_status(own["id"], {"running"}, as_=a)
    node.wait_status(other["id"], {"running"}, as_=b)

    with node.http(a) as http:
        for answer, doing in [
            (http.patch("/v1/vfolders/busy", json={"name": "busy2"}), "rename"),
            (http.delete("/v1/vfolders/busy"), "trash"),
            (http.post("/v1/vfolders/busy/purge", json={"confirm": "busy"}), "purge"),
        ]:
            error = refused(answer, 409, "folder_in_use")
            assert f"cannot {doing} folder 'busy'" in error["message"]
            assert own["name"] in error["message"]
            assert own["short_id"] in error["message"]
            assert error["details"]["sessions"][0]["short_id"] == own["short_id"]
        error = refused(http.delete(f"/v1/vfolders/{shared}"), 409, "folder_in_use")
        assert "a session of another user" in error["message"]
        assert other["short_id"] in error["message"]
        assert other["name"] not in error["message"]
        # what does not change the folder's name or data goes on
        assert http.patch("/v1/vfolders/busy", json={"cloneable": True}).status_code == 200
        assert http.get("/v1/vfolders/busy").json()["status"] == "ready"

    destroy(node, a, own["id"])
    destroy(node, b, other["id"])
    node.wait_status(own["id"], FINAL, as_=a)
    node.wait_status(other["id"], FINAL, as_=b)

    with node.http(a) as http:
        assert http.patch("/v1/vfolders/busy", json={"name": "busy2"}).status_code == 200
        assert http.delete("/v1/vfolders/busy2").status_code == 200
        purged = http.post("/v1/vfolders/busy2/purge", json={"confirm": "busy2"})
        assert purged.status_code == 200, purged.text
        assert http.delete(f"/v1/vfolders/{shared}").status_code == 200
