"""ls, mkdir, mv, rm through the CLI: rules, permissions, containment, folder state."""

from __future__ import annotations

import os

from filenode import Node


def test_files_mkdir_mv_rm_rules(node: Node) -> None:
    alice = node.user()
    name = node.folder(alice)["name"]
    cli, a = node.cli, alice["email"]
    cli.ok("vfolder", "mkdir", name, "a/b/c", "-p", as_=a)
    cli.ok("vfolder", "mkdir", name, "a/b/c", "-p", as_=a)  # -p: no error when it exists
    cli.fails("vfolder", "mkdir", name, "a", code="path_exists", as_=a)
    cli.fails("vfolder", "mkdir", name, "nope/x", code="path_not_found", as_=a)
    cli.ok("vfolder", "mkdir", name, "d", as_=a)
    cli.ok("vfolder", "mv", name, "d", "a/b", as_=a)  # into an existing directory
    assert [e["name"] for e in cli.json("vfolder", "ls", name, "a/b", as_=a)["entries"]] == [
        "c",
        "d",
    ]
    cli.fails("vfolder", "mv", name, "a", "a/b/x", code="invalid_path", as_=a)
    cli.fails("vfolder", "rm", name, "a", code="directory_not_empty", as_=a)
    cli.ok("vfolder", "rm", name, "a", "-r", as_=a)
    assert cli.json("vfolder", "ls", name, as_=a)["entries"] == []
    cli.fails("vfolder", "rm", name, "a", code="path_not_found", as_=a)


def test_files_paths_cannot_escape(node: Node) -> None:
    alice = node.user()
    folder = node.folder(alice)
    name, a = folder["name"], alice["email"]
    for bad in ("../x", "a/../../etc", ".."):
        node.cli.fails("vfolder", "ls", name, bad, code="invalid_path", as_=a)
        node.cli.fails("vfolder", "mkdir", name, bad, code="invalid_path", as_=a)
    node.cli.fails("vfolder", "mkdir", name, "x" * 256, code="name_too_long", as_=a)
    node.cli.ok("vfolder", "mkdir", name, "x" * 255, as_=a)
    # a symbolic link made inside the folder (as a session could) is listed, never followed
    view = node.config.mount_point / "rw" / folder["id"]
    os.symlink("/etc", view / "etc")
    entries = node.cli.json("vfolder", "ls", name, as_=a)["entries"]
    assert {"name": "etc", "type": "symlink", "target": "/etc"}.items() <= next(
        e for e in entries if e["name"] == "etc"
    ).items()
    link = node.cli.json("vfolder", "ls", name, "etc", as_=a)  # the link itself, like ls -l
    assert link["type"] == "symlink" and [e["name"] for e in link["entries"]] == ["etc"]
    node.cli.fails("vfolder", "ls", name, "etc/ssh", code="not_a_directory", as_=a)
    node.cli.fails(
        "vfolder",
        "download",
        name,
        "etc/passwd",
        "--dest",
        "/tmp",
        code="not_a_directory",
        as_=a,
    )
    node.cli.fails("vfolder", "mkdir", name, "etc/new", "-p", code="not_a_directory", as_=a)


def test_files_read_only_permission_reads_but_never_writes(node: Node, tmp_path) -> None:  # type: ignore[no-untyped-def]
    alice, bob = node.user(), node.user()
    name = node.folder(alice)["name"]
    a, b = alice["email"], bob["email"]
    (tmp_path / "f.txt").write_text("shared")
    node.cli.ok("vfolder", "upload", name, str(tmp_path / "f.txt"), as_=a)
    inv = node.cli.json("vfolder", "invite", name, b, "--permission", "ro", as_=a)
    node.cli.ok("vfolder", "accept", inv["invitations"][0]["id"], as_=b)
    dest = tmp_path / "dl"
    dest.mkdir()
    node.cli.ok("vfolder", "download", name, "f.txt", "--dest", str(dest), as_=b)
    assert (dest / "f.txt").read_text() == "shared"
    for args in (
        ("upload", name, str(tmp_path / "f.txt"), "--dest", "x"),
        ("mkdir", name, "d"),
        ("mv", name, "f.txt", "g.txt"),
        ("rm", name, "f.txt"),
    ):
        node.cli.fails("vfolder", *args, code="permission_denied", as_=b)
    assert [e["name"] for e in node.cli.json("vfolder", "ls", name, as_=a)["entries"]] == ["f.txt"]


def test_files_other_users_folder_does_not_exist(node: Node) -> None:
    alice, mallory = node.user(), node.user()
    name = node.folder(alice)["name"]
    m = mallory["email"]
    node.cli.fails("vfolder", "ls", name, code="vfolder_not_found", as_=m)
    node.cli.fails("vfolder", "mkdir", name, "x", code="vfolder_not_found", as_=m)
    node.cli.fails("vfolder", "usage", name, code="vfolder_not_found", as_=m)


def test_files_trashed_folder_refuses_file_operations(node: Node) -> None:
    alice = node.user()
    name = node.folder(alice)["name"]
    a = alice["email"]
    node.cli.ok("vfolder", "delete", name, as_=a)
    node.cli.fails("vfolder", "ls", name, code="invalid_status", as_=a)
    node.cli.fails("vfolder", "mkdir", name, "x", code="invalid_status", as_=a)
    node.cli.ok("vfolder", "restore", name, as_=a)
    node.cli.ok("vfolder", "mkdir", name, "x", as_=a)


def test_files_info_shows_views_on_this_node(node: Node) -> None:
    alice = node.user()
    folder = node.folder(alice)
    info = node.cli.json("vfolder", "info", folder["name"], as_=alice["email"])
    mnt = node.config.mount_point
    assert info["views"] == {"rw": f"{mnt}/rw/{folder['id']}", "ro": f"{mnt}/ro/{folder['id']}"}
    assert os.path.isdir(info["views"]["rw"]) and os.path.isdir(info["views"]["ro"])
    shown = node.cli.ok("vfolder", "info", folder["name"], as_=alice["email"])
    assert info["views"]["rw"] in shown and info["views"]["ro"] in shown


def test_files_info_shows_a_ro_user_only_the_ro_view(node: Node) -> None:
    alice, bob = node.user(), node.user()
    folder = node.folder(alice)
    name = folder["name"]
    node.cli.json("vfolder", "invite", name, bob["email"], "--permission", "ro", as_=alice["email"])
    node.cli.ok("vfolder", "accept", name, as_=bob["email"])
    mnt = node.config.mount_point
    info = node.cli.json("vfolder", "info", name, as_=bob["email"])
    assert info["permission"] == "ro"
    assert info["views"] == {"ro": f"{mnt}/ro/{folder['id']}"}
    shown = node.cli.ok("vfolder", "info", name, as_=bob["email"])
    assert "ro view" in shown and "rw view" not in shown and f"{mnt}/rw/" not in shown
    [listed] = [
        f
        for f in node.cli.json("vfolder", "list", as_=bob["email"])["vfolders"]
        if f["name"] == name
    ]
    assert listed["views"] == info["views"]


def test_files_entry_true_answers_what_a_path_is_without_listing_it(node: Node) -> None:
    alice = node.user()
    folder = node.folder(alice)
    backing = node.backing(folder)
    (backing / "d").mkdir()
    for i in range(5):
        (backing / "d" / f"f{i}").write_bytes(b"x" * i)
    (backing / "file.txt").write_bytes(b"abc")
    url = f"/v1/vfolders/{folder['name']}/files"
    with node.http(alice["email"]) as http:
        listed = http.get(url, params={"path": "d"}).json()
        assert listed["type"] == "dir" and len(listed["entries"]) == 5
        only = http.get(url, params={"path": "d", "entry": "true"}).json()
        assert only["type"] == "dir" and [e["name"] for e in only["entries"]] == ["d"]
        assert only["entries"][0]["type"] == "dir"
        one = http.get(url, params={"path": "file.txt", "entry": "true"}).json()
        assert one["type"] == "file" and one["entries"][0]["size"] == 3
        root = http.get(url, params={"entry": "true"}).json()
        assert root["type"] == "dir" and len(root["entries"]) == 1
        r = http.get(url, params={"path": "nothing", "entry": "true"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "path_not_found"
        r = http.get(url, params={"path": "d", "entry": "maybe"})
        assert r.status_code == 400, r.text
