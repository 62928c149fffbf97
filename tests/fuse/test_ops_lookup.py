"""The Operations object in-process: lookup counts, forget, ``..``, readdir, EIO wrapping.

No mount: the handlers are called directly under trio, the way pyfuse3 would call them, so
lookup counts and readdir offsets can be checked exactly (a real kernel hides both).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import platform
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyfuse3
import pytest

from conftest import Ctx, InProcess
from vfd.errors import ErrorCode, VfdError
from vfd.fuse import cstat
from vfd.fuse.guard import handler
from vfd.fuse.inodes import RO_ID, ROOT_ID, RW_ID, View
from vfd.fuse.ops_dirs import PLUS_BATCH

pytestmark = pytest.mark.trio

CTX = Ctx()


@dataclass
class Listing:
    """A readdir buffer that holds ``room`` entries, like the kernel's page-sized buffer."""

    room: int
    got: list[tuple[bytes, int, int]] = field(default_factory=list)

    def reply(self, token: Any, name: bytes, attr: pyfuse3.EntryAttributes, next_id: int) -> bool:
        assert token is self
        if len(self.got) >= self.room:
            return False
        self.got.append((name, attr.st_ino, next_id))
        return True


async def test_ops_lookup_counts_and_forget_drops(inproc: InProcess) -> None:
    """Each successful lookup counts one; forget by the same count closes the inode."""
    folder = inproc.new_folder()
    root = await inproc.root(folder)
    (folder.path / "f").write_bytes(b"x")
    first = await inproc.ops.lookup(root, b"f", CTX)
    second = await inproc.ops.lookup(root, b"f", CTX)
    assert first.st_ino == second.st_ino
    inode = inproc.registry.table.get(first.st_ino)
    assert inode is not None and inode.nlookup == 2
    fd = inode.fd
    await inproc.ops.forget([(first.st_ino, 1)])
    assert inode.nlookup == 1 and inproc.registry.table.get(first.st_ino) is inode
    await inproc.ops.forget([(first.st_ino, 1)])
    assert inproc.registry.table.get(first.st_ino) is None
    with pytest.raises(OSError) as exc:
        os.fstat(fd)
    assert exc.value.errno == errno.EBADF
    with pytest.raises(pyfuse3.FUSEError) as fexc:
        await inproc.ops.getattr(first.st_ino, CTX)
    assert fexc.value.errno == errno.ESTALE


async def test_ops_lookup_missing_name_is_a_cached_negative_entry(inproc: InProcess) -> None:
    """A missing name answers st_ino 0 with the entry timeout, so the kernel caches it."""
    folder = inproc.new_folder()
    root = await inproc.root(folder)
    e = await inproc.ops.lookup(root, b"nope", CTX)
    assert e.st_ino == 0 and e.entry_timeout == 1.0
    missing = await inproc.ops.lookup(RW_ID, b"0" * 32, CTX)
    assert missing.st_ino == 0


async def test_ops_lookup_views_are_distinct_inodes(inproc: InProcess) -> None:
    """The same backing file through rw/ and ro/ is two inodes, twins by backing key."""
    folder = inproc.new_folder()
    (folder.path / "f").write_bytes(b"x")
    rw = await inproc.ops.lookup(await inproc.root(folder, View.RW), b"f", CTX)
    ro = await inproc.ops.lookup(await inproc.root(folder, View.RO), b"f", CTX)
    assert rw.st_ino != ro.st_ino
    table = inproc.registry.table
    rw_inode, ro_inode = table.get(rw.st_ino), table.get(ro.st_ino)
    assert rw_inode is not None and ro_inode is not None
    assert table.twin(rw_inode) is ro_inode and rw_inode.key == ro_inode.key


async def test_ops_lookup_dotdot_stops_at_the_folder_root(inproc: InProcess) -> None:
    """``..`` of a folder root is its view directory; of a subdirectory, its parent."""
    folder = inproc.new_folder()
    root = await inproc.root(folder)
    up = await inproc.ops.lookup(root, b"..", CTX)
    assert up.st_ino == RW_ID
    ro_root = await inproc.root(folder, View.RO)
    assert (await inproc.ops.lookup(ro_root, b"..", CTX)).st_ino == RO_ID
    assert (await inproc.ops.lookup(RW_ID, b"..", CTX)).st_ino == ROOT_ID
    sub = await inproc.ops.mkdir(root, b"sub", 0o755, CTX)
    back = await inproc.ops.lookup(sub.st_ino, b"..", CTX)
    assert back.st_ino == root


async def test_ops_lookup_symlink_is_returned_not_followed(inproc: InProcess) -> None:
    """A symlink pointing outside the folder is an inode of its own; readlink gives the
    target text, and lookups below it fail (it is not a directory to the server)."""
    folder = inproc.new_folder()
    os.symlink("/etc", folder.path / "out")
    root = await inproc.root(folder)
    e = await inproc.ops.lookup(root, b"out", CTX)
    assert (e.st_mode & 0o170000) == 0o120000
    assert await inproc.ops.readlink(e.st_ino, CTX) == b"/etc"
    with pytest.raises(pyfuse3.FUSEError) as exc:
        await inproc.ops.lookup(e.st_ino, b"passwd", CTX)
    assert exc.value.errno == errno.ENOTDIR


async def test_ops_readdir_offsets_survive_a_concurrent_unlink(inproc: InProcess) -> None:
    """A listing continued after entries were removed and added neither skips nor repeats
    a name: offsets index the snapshot taken at the first readdir."""
    folder = inproc.new_folder()
    names = [f"f{i:02d}".encode() for i in range(20)]
    for n in names:
        (folder.path / n.decode()).write_bytes(b"")
    root = await inproc.root(folder)
    fh = await inproc.ops.opendir(root, CTX)
    first = Listing(room=8)
    inproc.ops.readdir_reply = first.reply
    await inproc.ops.readdir(fh, 0, first)
    seen = [n for n, _, _ in first.got]
    assert seen[:2] == [b".", b".."] and len(seen) == 8
    # someone removes an entry already listed and one not yet listed, and adds one
    os.unlink(folder.path / seen[3].decode())
    later = next(n for n in names if n not in seen)
    os.unlink(folder.path / later.decode())
    (folder.path / "new").write_bytes(b"")
    rest = Listing(room=1000)
    inproc.ops.readdir_reply = rest.reply
    await inproc.ops.readdir(fh, first.got[-1][2], rest)
    all_names = seen + [n for n, _, _ in rest.got]
    assert len(all_names) == len(set(all_names)), "a name came twice"
    assert set(all_names) - {b".", b".."} == set(names) - {later}
    await inproc.ops.releasedir(fh)


async def test_ops_readdir_counts_only_entries_the_kernel_took(inproc: InProcess) -> None:
    """readdirplus counts one lookup per entry returned, none for the one that did not fit,
    none for ``.`` and ``..``."""
    folder = inproc.new_folder()
    for n in ("a", "b", "c"):
        (folder.path / n).write_bytes(b"")
    root = await inproc.root(folder)
    fh = await inproc.ops.opendir(root, CTX)
    listing = Listing(room=4)  # ., .., and two of three
    inproc.ops.readdir_reply = listing.reply
    await inproc.ops.readdir(fh, 0, listing)
    table = inproc.registry.table
    counted = {name: table.get(ino) for name, ino, _ in listing.got[2:]}
    assert all(i is not None and i.nlookup == 1 for i in counted.values()), counted
    root_inode = table.get(root)
    assert root_inode is not None and root_inode.nlookup == 1
    kinds = {n for n in (b"a", b"b", b"c") if n not in counted}
    assert len(kinds) == 1
    (left,) = kinds
    st = os.stat(folder.path / left.decode())
    assert table.find(View.RW, (st.st_dev, st.st_ino)) is None, "an entry not taken was counted"


async def test_ops_readdir_of_views_lists_attached_folders(inproc: InProcess) -> None:
    """The mount root lists rw and ro; each view lists exactly the attached folders."""
    a, b = inproc.new_folder(), inproc.new_folder()
    top = Listing(room=100)
    inproc.ops.readdir_reply = top.reply
    fh = await inproc.ops.opendir(ROOT_ID, CTX)
    await inproc.ops.readdir(fh, 0, top)
    assert [n for n, _, _ in top.got] == [b".", b"..", b"rw", b"ro"]
    inproc.registry.detach(b.vfid)
    for view in (RW_ID, RO_ID):
        listing = Listing(room=100)
        inproc.ops.readdir_reply = listing.reply
        fh = await inproc.ops.opendir(view, CTX)
        await inproc.ops.readdir(fh, 0, listing)
        assert [n for n, _, _ in listing.got][2:] == [a.vfid.encode()]


async def test_ops_detached_folder_goes_stale(inproc: InProcess) -> None:
    """After detach its name is gone and inodes still held answer ESTALE."""
    folder = inproc.new_folder()
    root = await inproc.root(folder)
    inproc.registry.detach(folder.vfid)
    assert (RW_ID, folder.vfid.encode()) in inproc.notifier.entries
    assert (await inproc.ops.lookup(RW_ID, folder.vfid.encode(), CTX)).st_ino == 0
    with pytest.raises(pyfuse3.FUSEError) as exc:
        await inproc.ops.getattr(root, CTX)
    assert exc.value.errno == errno.ESTALE


async def test_ops_unexpected_exception_answers_eio_and_is_logged(
    inproc: InProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug inside a handler (here: a read on a handle that was never opened) answers EIO
    and logs the traceback, instead of ending pyfuse3.main()."""
    with (
        caplog.at_level(logging.ERROR, logger="vfd.fuse"),
        pytest.raises(pyfuse3.FUSEError) as exc,
    ):
        await inproc.ops.read(987654, 0, 10)
    assert exc.value.errno == errno.EIO
    assert any("unexpected error in read" in r.getMessage() for r in caplog.records)
    assert any(r.exc_info for r in caplog.records)


async def test_ops_guard_maps_oserror_and_vfderror(caplog: pytest.LogCaptureFixture) -> None:
    """OSError answers its errno and VfdError its code's errno, both without a log line."""

    @handler
    async def fails(exc: BaseException) -> None:
        raise exc

    cases = [
        (FileNotFoundError(errno.ENOENT, "x"), errno.ENOENT),
        (VfdError(ErrorCode.QUOTA_EXCEEDED, "full"), errno.EDQUOT),
        (pyfuse3.FUSEError(errno.EROFS), errno.EROFS),
        (OSError("no errno"), errno.EIO),
    ]
    for raised, expected in cases:
        with pytest.raises(pyfuse3.FUSEError) as exc:
            await fails(raised)
        assert exc.value.errno == expected, raised


def parse_dirents(data: bytes) -> list[tuple[bytes, int, int, int]]:
    """(name, ino, next offset, type) of each ``struct fuse_dirent`` in a plain reply."""
    out, pos = [], 0
    while pos < len(data):
        ino, off, namelen, dtype = struct.unpack_from("<QQII", data, pos)
        name = data[pos + 24 : pos + 24 + namelen]
        out.append((name, ino, off, dtype))
        pos += 24 + namelen + (-(24 + namelen) % 8)
    return out


async def test_ops_readdir_plain_records_and_offsets(inproc: InProcess) -> None:
    """Plain readdir replies are kernel dirent records that fit the buffer; continuing at
    the last offset lists the rest; inode numbers and types match what lookup reports."""
    folder = inproc.new_folder()
    (folder.path / "sub").mkdir()
    os.symlink("sub", folder.path / "ln")
    for i in range(40):
        (folder.path / f"file-{i:03d}").write_bytes(b"")
    root = await inproc.root(folder)
    fh = await inproc.ops.opendir(root, CTX)
    assert inproc.ops.is_dir_handle(fh)
    first = parse_dirents(inproc.ops.readdir_plain(fh, 0, 512))
    assert 0 < len(first) < 44 and sum(24 + len(n) + (-(24 + len(n)) % 8) for n, *_ in first) <= 512
    (folder.path / "file-000").unlink()  # removed after the snapshot: still listed once
    rest = parse_dirents(inproc.ops.readdir_plain(fh, first[-1][2], 1 << 16))
    entries = first + rest
    names = [n for n, *_ in entries]
    assert len(names) == len(set(names)) == 44
    assert inproc.ops.readdir_plain(fh, entries[-1][2], 1 << 16) == b""
    kinds = {n: t for n, _, _, t in entries}
    assert (kinds[b"sub"], kinds[b"ln"], kinds[b"file-001"], kinds[b"."]) == (4, 10, 8, 4)
    inos = {n: i for n, i, _, _ in entries}
    assert inos[b"."] == root and inos[b".."] == RW_ID
    assert inos[b"sub"] == (await inproc.ops.lookup(root, b"sub", CTX)).st_ino
    await inproc.ops.releasedir(fh)
    assert not inproc.ops.is_dir_handle(fh)


async def test_ops_readdirplus_replies_in_short_batches(inproc: InProcess) -> None:
    """A readdirplus reply stops after PLUS_BATCH entries even when the kernel's buffer has
    room (each costs a lookup); the next call goes on where it stopped."""
    folder = inproc.new_folder()
    for i in range(PLUS_BATCH + 50):
        (folder.path / f"f{i:04d}").write_bytes(b"")
    root = await inproc.root(folder)
    fh = await inproc.ops.opendir(root, CTX)
    first = Listing(room=10_000)
    inproc.ops.readdir_reply = first.reply
    await inproc.ops.readdir(fh, 0, first)
    assert len(first.got) == PLUS_BATCH
    rest = Listing(room=10_000)
    inproc.ops.readdir_reply = rest.reply
    await inproc.ops.readdir(fh, first.got[-1][2], rest)
    names = {n for n, _, _ in first.got + rest.got} - {b".", b".."}
    assert len(names) == PLUS_BATCH + 50


async def test_ops_cstat_layout_matches_libc(tmp_path: Path) -> None:
    """The C ``struct stat`` the fast paths reply with is the platform's (x86-64), checked
    against libc's own fstat; a packed stat reads back field for field."""
    if platform.machine() != "x86_64":
        assert not cstat.layout_ok()
        return
    assert cstat.layout_ok()
    f = tmp_path / "f"
    f.write_bytes(b"12345")
    st = os.stat(f)
    buf = ctypes.create_string_buffer(cstat.STAT.size)
    cstat.pack_stat(buf, 0, 77, st)
    fields = cstat.STAT.unpack_from(buf, 0)
    assert fields[1:8] == (77, st.st_nlink, st.st_mode, st.st_uid, st.st_gid, st.st_rdev, 5)
    assert fields[12] * 10**9 + fields[13] == st.st_mtime_ns
