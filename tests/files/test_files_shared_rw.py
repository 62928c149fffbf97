"""Folders shared rw: every rw holder can change what the others wrote, whatever their uids.

Processes run as two (or more) users on the host, through the mount's views, the way a
session's container does: ``setpriv`` with the user's uid/gid and, as supplementary group,
the folder's group (what ``session_groups`` gives a session mounting the folder). They
start in the folder's view directory (entered as root, as a bind mount gives a container its
folder), with umask 022 as most shells have. The daemon's file API is checked too (uploads as
an invited user).
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
from pathlib import Path
from typing import Any

from filenode import Node, wait_until

CHANGED_BY_OTHER = "written by a, then by b"


def sh(
    node: Node,
    folder: dict[str, Any],
    who: dict[str, Any],
    script: str,
    *,
    groups: tuple[int, ...] = (),
    view: str = "rw",
) -> subprocess.CompletedProcess[str]:
    """``script`` run by ``sh`` as ``who`` (uid = gid = their uid), with ``groups`` as
    supplementary groups, in the folder's ``view`` directory."""
    cwd = node.config.mount_point / view / folder["id"]
    group_arg = f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups"
    ids = [f"--reuid={who['uid']}", f"--regid={who['gid']}", group_arg]
    return subprocess.run(
        ["setpriv", *ids, "--", "sh", "-c", f"umask 022; {script}"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, (proc.args, proc.stdout, proc.stderr)
    return proc.stdout


def fails(proc: subprocess.CompletedProcess[str], why: str) -> None:
    assert proc.returncode != 0, (proc.args, proc.stdout)
    assert why in proc.stderr, proc.stderr


def mode_gid(node: Node, folder: dict[str, Any], rel: str) -> tuple[int, int]:
    st = os.lstat(node.config.mount_point / "rw" / folder["id"] / rel)
    return stat.S_IMODE(st.st_mode), st.st_gid


def root_group(node: Node, folder: dict[str, Any]) -> int:
    st = os.stat(node.config.mount_point / "rw" / folder["id"])
    assert st.st_mode & stat.S_ISGID, oct(st.st_mode)
    return st.st_gid


def test_files_shared_rw_invited_user_changes_what_the_owner_wrote(node: Node) -> None:
    a, b = node.user(), node.user()
    folder = node.folder(a)
    # before sharing: a's own files, with a's umask (0755 / 0644)
    ok(sh(node, folder, a, "mkdir -p old/sub && echo old > old/f && ln -s f old/link"))
    assert mode_gid(node, folder, "old") == (0o755, a["gid"])
    node.share(a, folder["name"], b)
    gid = root_group(node, folder)
    lo, hi = node.config.project_gid_range
    assert lo <= gid <= hi and gid not in (a["gid"], b["gid"])
    # what existed when the folder was shared is brought under the rule
    assert mode_gid(node, folder, "old") == (0o2775, gid)
    assert mode_gid(node, folder, "old/sub") == (0o2775, gid)
    assert mode_gid(node, folder, "old/f") == (0o664, gid)
    assert mode_gid(node, folder, "old/link")[1] == gid
    g = (gid,)
    ok(sh(node, folder, b, "echo b >> old/f && echo b > old/b.txt && mkdir old/bd", groups=g))
    assert mode_gid(node, folder, "old/b.txt") == (0o664, gid)
    assert mode_gid(node, folder, "old/bd") == (0o2775, gid)
    ok(sh(node, folder, a, "echo a >> old/b.txt && echo a > old/bd/x && rm old/b.txt", groups=g))
    ok(sh(node, folder, b, "rm old/bd/x && rmdir old/bd && mv old/f old/g", groups=g))
    assert (node.backing(folder) / "old" / "g").read_text() == "old\nb\n"


def test_files_shared_rw_project_members_change_each_others_files(node: Node) -> None:
    a, b = node.user(), node.user()
    created = node.project(a, b)
    project = created["name"]
    folder = node.cli.json("vfolder", "create", f"{project}-data", "--project", project)
    gid = root_group(node, folder)
    assert gid == created["gid"]
    g = (gid,)
    ok(sh(node, folder, a, "mkdir d && echo a > d/f && echo x > top", groups=g))
    assert mode_gid(node, folder, "d/f") == (0o664, gid)
    assert mode_gid(node, folder, "d") == (0o2775, gid)
    ok(sh(node, folder, b, f"echo {CHANGED_BY_OTHER!r} > d/f && touch d/g && rm top", groups=g))
    assert mode_gid(node, folder, "d/g") == (0o664, gid)
    ok(sh(node, folder, a, "rm d/g && echo again >> d/f", groups=g))
    assert (node.backing(folder) / "d" / "f").read_text() == f"{CHANGED_BY_OTHER}\nagain\n"


def test_files_shared_rw_chmod_keeps_group_equal_to_owner(node: Node) -> None:
    a, b = node.user(), node.user()
    folder = node.folder(a)
    node.share(a, folder["name"], b)
    gid = root_group(node, folder)
    g = (gid,)
    ok(sh(node, folder, a, "umask 077; echo s > secret && mkdir priv", groups=g))
    assert mode_gid(node, folder, "secret") == (0o660, gid)
    assert mode_gid(node, folder, "priv") == (0o2770, gid)
    ok(sh(node, folder, a, "chmod 600 secret && chmod 700 priv && chmod 744 priv", groups=g))
    assert mode_gid(node, folder, "secret") == (0o660, gid)
    assert mode_gid(node, folder, "priv") == (0o2774, gid)
    # the group stays the folder's: a chgrp to one of the owner's other groups is refused
    fails(sh(node, folder, a, f"chgrp {a['gid']} secret", groups=g), "Operation not permitted")
    ok(sh(node, folder, b, "echo b >> secret && touch priv/b", groups=g))


def test_files_shared_rw_gives_no_write_to_others(node: Node) -> None:
    a, b, stranger, reader = node.user(), node.user(), node.user(), node.user()
    folder = node.folder(a)
    node.share(a, folder["name"], b)
    node.share(a, folder["name"], reader, "ro")
    gid = root_group(node, folder)
    ok(sh(node, folder, a, "mkdir d && echo a > d/f", groups=(gid,)))
    # without the folder's group (a user the folder was never shared with): no write
    fails(sh(node, folder, stranger, "echo x >> d/f"), "Permission denied")
    fails(sh(node, folder, stranger, "touch d/new"), "Permission denied")
    assert mode_gid(node, folder, "d/f")[0] & 0o002 == 0
    # a reader holds the group but only reaches the ro/ view: it reads, never writes
    assert ok(sh(node, folder, reader, "cat d/f", groups=(gid,), view="ro")) == "a\n"
    fails(sh(node, folder, reader, "echo x >> d/f", groups=(gid,), view="ro"), "Read-only")
    fails(sh(node, folder, reader, "touch d/new", groups=(gid,), view="ro"), "Read-only")
    # the mount above the folders is root's alone: no host user reaches rw/ by path
    top = node.config.mount_point / "rw"
    assert stat.S_IMODE(os.stat(top).st_mode) == 0o700
    assert os.stat(top).st_uid == 0


def test_files_shared_rw_upload_by_invited_user_and_quota_of_the_folder(
    node: Node, tmp_path: Path
) -> None:
    a, b = node.user(), node.user()
    folder = node.folder(a)
    ok(sh(node, folder, a, "mkdir inbox"))
    node.share(a, folder["name"], b)
    gid = root_group(node, folder)
    before = node.usage(folder)["used_bytes"]
    src = tmp_path / "report.txt"
    src.write_bytes(b"x" * 10_000)
    # the daemon's file API acts as b with the folder's group: it may write in a's directory
    node.cli.ok("vfolder", "upload", folder["name"], str(src), "--dest", "inbox/", as_=b["email"])
    assert mode_gid(node, folder, "inbox/report.txt") == (0o664, gid)
    assert node.usage(folder)["used_bytes"] == before + 10_000  # a's scope pays
    ok(sh(node, folder, a, "echo a >> inbox/report.txt", groups=(gid,)))
    # a user no longer sharing the folder no longer reaches it at all
    node.cli.ok("vfolder", "leave", folder["name"], as_=b["email"])
    node.cli.fails(
        "vfolder",
        "upload",
        folder["name"],
        str(src),
        "--dest",
        "inbox/x",
        code="vfolder_not_found",
        as_=b["email"],
    )


def test_files_shared_rw_folder_group_survives_a_second_share(node: Node) -> None:
    a, b, c = node.user(), node.user(), node.user()
    folder = node.folder(a)
    node.share(a, folder["name"], b)
    gid = root_group(node, folder)
    node.share(a, folder["name"], c)
    assert root_group(node, folder) == gid
    other = node.folder(a)
    node.share(a, other["name"], b)
    assert root_group(node, other) != gid
    # the gid is the folder's alone: new projects do not get it, nor may they take it
    project = node.project()
    assert project["gid"] not in (gid, root_group(node, other))
    node.cli.fails(
        "admin",
        "project",
        "create",
        f"p{os.urandom(3).hex()}",
        "--gid",
        str(gid),
        code="invalid_argument",
    )


def test_files_shared_rw_raising_an_invitee_to_rw_shares_the_folder(node: Node) -> None:
    a, b = node.user(), node.user()
    folder = node.folder(a)
    inv = node.cli.json(
        "vfolder", "invite", folder["name"], b["email"], "--permission", "ro", as_=a["email"]
    )
    node.cli.ok("vfolder", "accept", inv["invitations"][0]["id"], as_=b["email"])
    ok(sh(node, folder, a, "echo a > f"))
    root = os.stat(node.config.mount_point / "rw" / folder["id"])
    assert not root.st_mode & stat.S_ISGID  # shared ro only: no group yet
    with node.http(as_=a["email"]) as http:
        path = f"/v1/vfolders/{folder['name']}/members/{b['email']}"
        assert http.put(path, json={"permission": "rw"}).is_success
    gid = root_group(node, folder)
    assert mode_gid(node, folder, "f") == (0o664, gid)
    ok(sh(node, folder, b, "echo b >> f", groups=(gid,)))


def test_files_shared_rw_accepted_while_in_the_trash_is_applied_on_restore(node: Node) -> None:
    a, b = node.user(), node.user()
    folder = node.folder(a)
    ok(sh(node, folder, a, "echo a > f"))
    inv = node.cli.json(
        "vfolder", "invite", folder["name"], b["email"], "--permission", "rw", as_=a["email"]
    )
    node.cli.ok("vfolder", "delete", folder["name"], as_=a["email"])
    node.cli.ok("vfolder", "accept", inv["invitations"][0]["id"], as_=b["email"])
    node.cli.ok("vfolder", "restore", folder["name"], as_=a["email"])
    gid = root_group(node, folder)
    assert mode_gid(node, folder, "f") == (0o664, gid)
    ok(sh(node, folder, b, "echo b >> f", groups=(gid,)))


def test_files_shared_rw_while_mountd_is_down_is_applied_at_its_start(node: Node) -> None:
    """Last in the module: it kills mountd (``vfd up`` starts it again)."""
    a, b = node.user(), node.user()
    folder = node.folder(a)
    ok(sh(node, folder, a, "mkdir d && echo a > d/f"))
    pid = node.mountd_pid()
    assert pid is not None
    os.kill(node.process.pid, signal.SIGSTOP)  # vfd up must not restart mountd meanwhile
    try:
        os.kill(pid, signal.SIGKILL)
        wait_until("mountd's end", lambda: node.mountd_pid() is None)
        node.share(a, folder["name"], b)  # recorded; mountd shares when it starts
    finally:
        os.kill(node.process.pid, signal.SIGCONT)
    wait_until("mountd's restart", lambda: node.mountd_pid() not in (None, pid))
    gid = root_group(node, folder)
    assert mode_gid(node, folder, "d/f") == (0o664, gid)
    ok(sh(node, folder, b, "echo b >> d/f && touch d/g", groups=(gid,)))
