"""``vfd admin quota show|set|rescan`` and ``vfd vfolder usage`` against the live mount."""

from __future__ import annotations

from filenode import Node


def test_files_quota_set_show_and_limits_apply_at_once(node: Node) -> None:
    alice = node.user()
    folder = node.folder(alice)
    a = alice["email"]
    shown = node.cli.json("admin", "quota", "show", "--user", a)
    assert shown["scope"] == folder["scope"] and shown["max_bytes"] == 0
    node.cli.ok("admin", "quota", "set", folder["scope"], "--bytes", "10K", "--files", "3")
    shown = node.cli.json("admin", "quota", "show", folder["scope"])
    assert (shown["max_bytes"], shown["max_files"], shown["live"]) == (10240, 3, True)
    view = node.config.mount_point / "rw" / folder["id"]
    xattrs = {k: int(v) for k, v in _quota_xattrs(view).items()}
    assert xattrs["user.vfd.quota.max_bytes"] == 10240
    assert xattrs["user.vfd.quota.max_files"] == 3
    for i in range(3):
        node.cli.ok("vfolder", "mkdir", folder["name"], f"d{i}", as_=a)
    node.cli.fails("vfolder", "mkdir", folder["name"], "d3", code="quota_exceeded", as_=a)
    node.cli.ok("admin", "quota", "set", "--user", a, "--files", "0")
    node.cli.ok("vfolder", "mkdir", folder["name"], "d3", as_=a)


def test_files_quota_bad_input(node: Node) -> None:
    alice = node.user()
    node.folder(alice)
    a = alice["email"]
    node.cli.fails("admin", "quota", "show", code="invalid_argument")
    node.cli.fails("admin", "quota", "show", "user:xyz", code="invalid_argument")
    node.cli.fails("admin", "quota", "show", "--user", "nobody@example.org", code="user_not_found")
    node.cli.fails("admin", "quota", "show", "--user", a, "--host", "mars", code="host_not_found")
    node.cli.fails("admin", "quota", "set", "--user", a, code="invalid_argument")
    node.cli.fails("admin", "quota", "show", "--user", a, code="admin_required", as_=a)
    node.cli.usage_error("admin", "quota", "set", "--user", a, "--bytes", "lots")


def test_files_quota_rescan_reports_and_fixes_drift(node: Node) -> None:
    alice = node.user()
    folder = node.folder(alice)
    a = alice["email"]
    # an out-of-band change the counters cannot know about (e.g. an NFS peer wrote it)
    (node.backing(folder) / "outside.bin").write_bytes(b"z" * 4096)
    before = node.cli.json("vfolder", "usage", folder["name"], as_=a)
    assert before["used_bytes"] == 0
    result = node.cli.json("admin", "quota", "rescan", "--user", a)
    assert result["drifted"] == 1
    (scope,) = result["scopes"]
    assert scope["before"] == {"bytes": 0, "files": 0}
    assert scope["after"] == {"bytes": 4096, "files": 1}
    after = node.cli.json("vfolder", "usage", folder["name"], as_=a)
    assert (after["used_bytes"], after["used_files"]) == (4096, 1)
    again = node.cli.json("admin", "quota", "rescan", "--user", a)
    assert again["drifted"] == 0
    everything = node.cli.ok("admin", "quota", "rescan")
    assert "Rescanned" in everything


def _quota_xattrs(path: object) -> dict[str, bytes]:
    import xattr

    return {
        k: xattr.getxattr(str(path), k)
        for k in xattr.listxattr(str(path))
        if k.startswith("user.vfd.quota.")
    }


def test_files_quota_negative_limit_is_refused(node: Node) -> None:
    alice = node.user()
    node.folder(alice)
    with node.http() as http:
        r = http.put("/v1/admin/quota", json={"user": alice["email"], "max_bytes": -1})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_argument"
    assert r.json()["error"]["details"]["field"] == "max_bytes"


def test_files_quota_list_shows_every_scope_with_owner_limits_and_use(node: Node) -> None:
    alice = node.user()
    folder = node.folder(alice)
    a = alice["email"]
    (node.config.mount_point / "rw" / folder["id"] / "data.bin").write_bytes(b"z" * 3000)
    node.cli.ok("admin", "quota", "set", "--user", a, "--bytes", "1M", "--files", "50")
    project = f"p{folder['id'][:8]}"
    node.cli.ok("admin", "project", "create", project)
    shared = node.cli.json("vfolder", "create", f"{project}-set", "--project", project)

    scopes = node.cli.json("admin", "quota", "list")["scopes"]
    mine = {s["scope"]: s for s in scopes}
    assert mine[folder["scope"]] == {
        "owner": a,
        "host": "local",
        "scope": folder["scope"],
        "max_bytes": 1 << 20,
        "max_files": 50,
        "used_bytes": 3000,
        "used_files": 1,
        "live": True,
        "over_limit": [],
    }
    assert mine[shared["scope"]]["owner"] == project
    assert node.cli.json("admin", "quota", "list", "--host", "local")["scopes"] == scopes

    table = node.cli.ok("admin", "quota", "list")
    line = next(x for x in table.splitlines() if a in x)
    assert "local" in line and folder["scope"][:13] in line and "1 MiB" in line and "50" in line
    node.cli.fails("admin", "quota", "list", "--host", "mars", code="host_not_found")
    node.cli.fails("admin", "quota", "list", code="admin_required", as_=a)


def test_files_quota_set_below_use_warns_and_applies(node: Node) -> None:
    alice = node.user()
    folder = node.folder(alice)
    a = alice["email"]
    view = node.config.mount_point / "rw" / folder["id"]
    for i in range(3):
        (view / f"f{i}.bin").write_bytes(b"z" * 4096)

    done = node.cli.run("admin", "quota", "set", "--user", a, "--bytes", "8K")
    assert done.exit_code == 0, done.stderr
    [warning] = done.stderr.splitlines()
    assert warning.startswith(f"warning: {folder['scope']} on local already uses 12 KiB")
    assert "byte limit 8 KiB" in warning and "EDQUOT" in warning
    result = node.cli.json("admin", "quota", "set", "--user", a, "--files", "2")
    assert result["over_limit"] == ["bytes", "files"] and result["max_bytes"] == 8192
    assert node.cli.json("admin", "quota", "show", "--user", a)["over_limit"] == ["bytes", "files"]
    assert node.cli.json("vfolder", "usage", folder["name"], as_=a)["over_limit"] == [
        "bytes",
        "files",
    ]
    node.cli.fails("vfolder", "mkdir", folder["name"], "more", code="quota_exceeded", as_=a)

    (view / "f0.bin").unlink()
    (view / "f1.bin").unlink()
    done = node.cli.run("admin", "quota", "set", "--user", a, "--bytes", "8K", "--files", "2")
    assert done.exit_code == 0 and done.stderr == ""
    assert node.cli.json("admin", "quota", "show", "--user", a)["over_limit"] == []
