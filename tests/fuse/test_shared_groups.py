"""mountd's "group = owner" rule in group-shared folders, and the ``share`` control op.

In a folder whose root is set-group-ID (a project folder; a user folder after ``share``),
every entry gets the folder's group and ``g = u`` whatever the creator's umask, chmod keeps
it, chgrp to another group is EPERM; ``share`` brings existing entries under the rule without
following links out of the folder. Folders without a set-group-ID root are untouched by the
rule (the POSIX tests run on those).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest
from fsprobe import OTHER, USER, fork_call, raises_errno
from harness import Folder, MountdProcess

from vfd.errors import VfdError

pytestmark = pytest.mark.fuse

GROUP = 4242
"""The folder's group in these tests (no host group needs to exist for it)."""


def mode_gid(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return stat.S_IMODE(st.st_mode), st.st_gid


def as_member(ids: tuple[int, int], folder: Folder, fn, *args, umask: int = 0o022):  # type: ignore[no-untyped-def]
    """``fn(*args)`` as ``ids`` holding the folder's group, in the folder's rw/ view."""
    return fork_call(
        fn, *args, uid=ids[0], gid=ids[1], groups=(GROUP,), cwd=folder.rw, umask=umask
    ).result()


def _make_entries() -> None:
    os.mkdir("d")
    with open("d/f", "w") as f:
        f.write("u")
    os.mkfifo("d/fifo")
    os.symlink("f", "d/link")


def _append(name: str) -> None:
    with open(name, "a") as f:
        f.write("o")


@pytest.fixture
def shared(mountd: MountdProcess) -> Folder:
    folder = mountd.new_folder(uid=USER[0], gid=USER[1])
    mountd.call("share", vfid=folder.vfid, gid=GROUP)
    return folder


def test_shared_groups_share_sets_the_root(mountd: MountdProcess) -> None:
    folder = mountd.new_folder(uid=USER[0], gid=USER[1])
    assert mode_gid(folder.rw) == (0o755, USER[1])
    answer = mountd.call("share", vfid=folder.vfid, gid=GROUP)
    assert answer == {"vfid": folder.vfid, "gid": GROUP, "changed": 1}
    assert mode_gid(folder.rw) == (0o2775, GROUP)
    assert os.stat(folder.rw).st_uid == USER[0]  # the owner stays
    assert mountd.call("share", vfid=folder.vfid, gid=GROUP)["changed"] == 0  # idempotent


def test_shared_groups_new_entries_get_the_group_and_g_equals_u(shared: Folder) -> None:
    as_member(USER, shared, _make_entries)
    assert mode_gid(shared.rw / "d") == (0o2775, GROUP)
    assert mode_gid(shared.rw / "d" / "f") == (0o664, GROUP)
    assert mode_gid(shared.rw / "d" / "fifo") == (0o664, GROUP)
    assert mode_gid(shared.rw / "d" / "link")[1] == GROUP
    as_member(USER, shared, lambda: os.close(os.open("private", os.O_CREAT | os.O_WRONLY, 0o600)))
    assert mode_gid(shared.rw / "private") == (0o660, GROUP)
    as_member(USER, shared, os.mkdir, "closed", 0o700, umask=0o077)
    assert mode_gid(shared.rw / "closed") == (0o2770, GROUP)
    # another member changes and removes what USER made
    as_member(OTHER, shared, _append, "private")
    as_member(OTHER, shared, os.mkdir, "closed/o")
    as_member(OTHER, shared, os.unlink, "d/f")
    assert (shared.backing / "private").read_text() == "o"


def test_shared_groups_chmod_keeps_the_rule_and_chgrp_is_refused(shared: Folder) -> None:
    as_member(USER, shared, _make_entries)
    as_member(USER, shared, os.chmod, "d/f", 0o600)
    assert mode_gid(shared.rw / "d" / "f") == (0o660, GROUP)
    as_member(USER, shared, os.chmod, "d", 0o705)
    assert mode_gid(shared.rw / "d") == (0o2775, GROUP)
    with raises_errno(errno.EPERM):
        as_member(USER, shared, os.chown, "d/f", -1, USER[1])
    assert mode_gid(shared.rw / "d" / "f") == (0o660, GROUP)


def test_shared_groups_rule_is_off_in_folders_not_shared(mountd: MountdProcess) -> None:
    folder = mountd.new_folder(uid=USER[0], gid=USER[1])
    fork_call(_make_entries, uid=USER[0], gid=USER[1], cwd=folder.rw).result()
    assert mode_gid(folder.rw / "d" / "f") == (0o644, USER[1])
    assert mode_gid(folder.rw / "d") == (0o755, USER[1])
    fork_call(os.chmod, "d/f", 0o600, uid=USER[0], gid=USER[1], cwd=folder.rw).result()
    assert mode_gid(folder.rw / "d" / "f") == (0o600, USER[1])


def test_shared_groups_share_walks_existing_entries_without_leaving_the_folder(
    mountd: MountdProcess, tmp_path: Path
) -> None:
    folder = mountd.new_folder(uid=USER[0], gid=USER[1])
    outside_dir = tmp_path / "outside"
    outside_dir.mkdir(mode=0o755)
    outside = outside_dir / "file"
    outside.write_text("not yours")
    outside.chmod(0o600)
    fork_call(_make_entries, uid=USER[0], gid=USER[1], cwd=folder.rw).result()
    # links out of the folder, made behind mountd's back in the backing tree
    os.symlink(outside, folder.backing / "d" / "out-file")
    os.symlink(outside_dir, folder.backing / "out-dir")
    before_file, before_dir = os.stat(outside), os.stat(outside_dir)
    changed = mountd.call("share", vfid=folder.vfid, gid=GROUP)["changed"]
    assert changed == 7  # root, d, f, fifo, link, out-file, out-dir: nothing outside
    assert mode_gid(folder.backing / "d") == (0o2775, GROUP)
    assert mode_gid(folder.backing / "d" / "f") == (0o664, GROUP)
    assert mode_gid(folder.backing / "d" / "fifo") == (0o664, GROUP)
    assert mode_gid(folder.backing / "out-dir")[1] == GROUP  # the link itself
    for path, before in ((outside, before_file), (outside_dir, before_dir)):
        after = os.stat(path)
        assert (after.st_mode, after.st_gid) == (before.st_mode, before.st_gid), path
    # the kernel's cached attributes were dropped: a member writes at once
    as_member(OTHER, folder, _append, "d/f")


def test_shared_groups_share_refusals(mountd: MountdProcess) -> None:
    folder = mountd.new_folder(uid=USER[0], gid=USER[1])
    with pytest.raises(VfdError) as info:
        mountd.call("share", vfid="0" * 32, gid=GROUP)
    assert info.value.code.value == "vfolder_not_found"
    for bad in (0, -1, 2**32 - 1):
        with pytest.raises(VfdError) as info:
            mountd.call("share", vfid=folder.vfid, gid=bad)
        assert info.value.code.value == "invalid_argument", bad
    assert mode_gid(folder.rw) == (0o755, USER[1])
