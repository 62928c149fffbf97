"""The Operations object in-process: quota arithmetic (EDQUOT before anything is stored),
what removals give back, and EROFS everywhere in ro/.

Counters are read from the registry right after each handler returns: in-process there is
no kernel in between, so the numbers must be exact at every step.
"""

from __future__ import annotations

import errno
import os

import pyfuse3
import pytest

from conftest import Ctx, InProcess
from vfd.folders.quota import Usage, scan_trees
from vfd.fuse.inodes import Folder, View

pytestmark = pytest.mark.trio

CTX = Ctx()
RW, WRONLY = os.O_RDWR, os.O_WRONLY


def used(folder: Folder) -> tuple[int, int]:
    u = folder.usage.used
    return u.bytes, u.files


async def create(inproc: InProcess, parent: int, name: bytes, flags: int = RW) -> tuple[int, int]:
    fi, e = await inproc.ops.create(parent, name, 0o100644, flags | os.O_CREAT, CTX)
    return fi.fh, e.st_ino


async def expect_errno(code: int, coro: object) -> None:
    with pytest.raises(pyfuse3.FUSEError) as exc:
        await coro  # type: ignore[misc]
    assert exc.value.errno == code, f"expected {errno.errorcode[code]}, got {exc.value.errno}"


async def test_ops_quota_write_past_limit_fails_before_storing(inproc: InProcess) -> None:
    """A write that would pass max_bytes answers EDQUOT and the file does not change; one
    that reaches the limit exactly passes; rewriting inside the file costs nothing."""
    folder = inproc.new_folder(max_bytes=1000)
    root = await inproc.root(folder)
    fh, _ = await create(inproc, root, b"f")
    assert await inproc.ops.write(fh, 0, b"a" * 600) == 600
    await expect_errno(errno.EDQUOT, inproc.ops.write(fh, 600, b"b" * 401))
    assert os.stat(folder.path / "f").st_size == 600
    assert used(folder) == (600, 1)
    assert await inproc.ops.write(fh, 0, b"c" * 1000) == 1000
    assert await inproc.ops.write(fh, 10, b"d" * 500) == 500
    assert used(folder) == (1000, 1)
    await expect_errno(errno.EDQUOT, inproc.ops.write(fh, 1000, b"e"))
    await inproc.ops.release(fh)


async def test_ops_quota_sparse_write_counts_apparent_size(inproc: InProcess) -> None:
    """A write far past the end counts the whole apparent size (like CephFS rbytes)."""
    folder = inproc.new_folder(max_bytes=10_000)
    root = await inproc.root(folder)
    fh, _ = await create(inproc, root, b"sparse")
    await expect_errno(errno.EDQUOT, inproc.ops.write(fh, 10_000, b"x"))
    assert await inproc.ops.write(fh, 9_999, b"x") == 1
    assert used(folder) == (10_000, 1)
    await inproc.ops.release(fh)


async def test_ops_quota_truncate_reserves_and_frees(inproc: InProcess) -> None:
    """Growing truncate is checked against the limit; shrinking gives space back."""
    folder = inproc.new_folder(max_bytes=5000)
    root = await inproc.root(folder)
    fh, ino = await create(inproc, root, b"t")
    await inproc.ops.release(fh)
    attr = pyfuse3.EntryAttributes()
    attr.st_size = 6000
    fields_grow = _size_fields()
    await expect_errno(errno.EDQUOT, inproc.ops.setattr(ino, attr, fields_grow, None, CTX))
    assert os.stat(folder.path / "t").st_size == 0
    attr.st_size = 5000
    await inproc.ops.setattr(ino, attr, fields_grow, None, CTX)
    assert used(folder) == (5000, 1)
    attr.st_size = 100
    await inproc.ops.setattr(ino, attr, fields_grow, None, CTX)
    assert used(folder) == (100, 1)


def _size_fields() -> pyfuse3.SetattrFields:
    """SetattrFields with only update_size (pyfuse3 sets these flags from C; emulate)."""

    class Fields:
        update_size = True
        update_mode = update_uid = update_gid = update_atime = update_mtime = False
        update_ctime = False

    return Fields()  # type: ignore[return-value]


async def test_ops_quota_files_limit_covers_every_kind(inproc: InProcess) -> None:
    """create, mkdir, mknod and symlink each add one inode; the one past max_files is
    refused with EDQUOT and leaves nothing behind."""
    folder = inproc.new_folder(max_files=4)
    root = await inproc.root(folder)
    fh, _ = await create(inproc, root, b"f")
    await inproc.ops.release(fh)
    await inproc.ops.mkdir(root, b"d", 0o755, CTX)
    await inproc.ops.mknod(root, b"p", 0o010644, 0, CTX)
    await inproc.ops.symlink(root, b"s", b"f", CTX)
    assert used(folder) == (0, 4)
    await expect_errno(errno.EDQUOT, inproc.ops.mkdir(root, b"d2", 0o755, CTX))
    await expect_errno(errno.EDQUOT, inproc.ops.create(root, b"g", 0o100644, RW, CTX))
    await expect_errno(errno.EDQUOT, inproc.ops.symlink(root, b"s2", b"x", CTX))
    assert sorted(os.listdir(folder.path)) == ["d", "f", "p", "s"]
    # a hard link is no new inode: allowed at the limit
    f = await inproc.ops.lookup(root, b"f", CTX)
    await inproc.ops.link(f.st_ino, root, b"f2", CTX)
    assert used(folder) == (0, 4)
    await inproc.ops.rmdir(root, b"d", CTX)
    assert used(folder) == (0, 3)


async def test_ops_quota_hard_links_count_once(inproc: InProcess) -> None:
    """Two names, one inode: counted once, freed only with the last name."""
    folder = inproc.new_folder()
    root = await inproc.root(folder)
    fh, ino = await create(inproc, root, b"a")
    await inproc.ops.write(fh, 0, b"x" * 300)
    await inproc.ops.release(fh)
    await inproc.ops.link(ino, root, b"b", CTX)
    assert used(folder) == (300, 1)
    await inproc.ops.unlink(root, b"a", CTX)
    assert used(folder) == (300, 1)
    await inproc.ops.unlink(root, b"b", CTX)
    assert used(folder) == (0, 0)


async def test_ops_quota_unlinked_open_file_frees_at_last_release(inproc: InProcess) -> None:
    """Unlinking an open file keeps its space (it is still on disk) until the last close,
    including what is written after the unlink."""
    folder = inproc.new_folder()
    root = await inproc.root(folder)
    fh, ino = await create(inproc, root, b"a")
    await inproc.ops.write(fh, 0, b"x" * 100)
    fh2 = (await inproc.ops.open(ino, os.O_RDONLY, CTX)).fh
    await inproc.ops.unlink(root, b"a", CTX)
    assert used(folder) == (100, 1)
    await inproc.ops.write(fh, 100, b"y" * 50)
    assert used(folder) == (150, 1)
    await inproc.ops.release(fh)
    assert used(folder) == (150, 1)
    await inproc.ops.release(fh2)
    assert used(folder) == (0, 0)


async def test_ops_quota_rename_over_a_file_frees_it(inproc: InProcess) -> None:
    """rename onto an existing file frees the replaced one; onto another name of the same
    inode does nothing."""
    folder = inproc.new_folder()
    root = await inproc.root(folder)
    for name, size in ((b"a", 10), (b"b", 1000)):
        fh, _ = await create(inproc, root, name)
        await inproc.ops.write(fh, 0, b"z" * size)
        await inproc.ops.release(fh)
    await inproc.ops.rename(root, b"a", root, b"b", 0, CTX)
    assert used(folder) == (10, 1)
    b = await inproc.ops.lookup(root, b"b", CTX)
    await inproc.ops.link(b.st_ino, root, b"c", CTX)
    await inproc.ops.rename(root, b"b", root, b"c", 0, CTX)
    assert used(folder) == (10, 1)
    assert scan_trees([folder.path]) == Usage(10, 1)


async def test_ops_quota_cross_folder_rename_and_link_are_exdev(inproc: InProcess) -> None:
    """Folders are separate trees: rename or link between them (even of one scope) is
    EXDEV, so tools copy and the copy is accounted."""
    a = inproc.new_folder()
    b = inproc.new_folder(scope=a.scope)
    ra, rb = await inproc.root(a), await inproc.root(b)
    fh, ino = await create(inproc, ra, b"f")
    await inproc.ops.release(fh)
    await expect_errno(errno.EXDEV, inproc.ops.rename(ra, b"f", rb, b"f", 0, CTX))
    await expect_errno(errno.EXDEV, inproc.ops.link(ino, rb, b"f", CTX))


async def test_ops_readonly_view_refuses_every_mutation(inproc: InProcess) -> None:
    """In ro/ each mutating handler answers EROFS and the backing tree stays as it was."""
    folder = inproc.new_folder()
    (folder.path / "f").write_bytes(b"data")
    (folder.path / "d").mkdir()
    before = sorted(os.listdir(folder.path)), (folder.path / "f").read_bytes()
    ro = await inproc.root(folder, View.RO)
    f = (await inproc.ops.lookup(ro, b"f", CTX)).st_ino
    attr = pyfuse3.EntryAttributes()
    ops = inproc.ops
    refused = [
        ops.open(f, WRONLY, CTX),
        ops.open(f, os.O_RDONLY | os.O_TRUNC, CTX),
        ops.create(ro, b"n", 0o100644, RW, CTX),
        ops.mkdir(ro, b"n", 0o755, CTX),
        ops.mknod(ro, b"n", 0o010644, 0, CTX),
        ops.symlink(ro, b"n", b"f", CTX),
        ops.link(f, ro, b"n", CTX),
        ops.unlink(ro, b"f", CTX),
        ops.rmdir(ro, b"d", CTX),
        ops.rename(ro, b"f", ro, b"g", 0, CTX),
        ops.setattr(f, attr, _size_fields(), None, CTX),
        ops.setxattr(f, b"user.x", b"1", CTX),
        ops.removexattr(f, b"user.x", CTX),
    ]
    for coro in refused:
        await expect_errno(errno.EROFS, coro)
    assert (sorted(os.listdir(folder.path)), (folder.path / "f").read_bytes()) == before
    fi = await ops.open(f, os.O_RDONLY, CTX)
    assert await ops.read(fi.fh, 0, 100) == b"data"
    await ops.release(fi.fh)


async def test_ops_quota_virtual_xattrs_on_folder_roots(inproc: InProcess) -> None:
    """Folder roots answer user.vfd.quota.* (decimal), list them, refuse to set them."""
    folder = inproc.new_folder(max_bytes=4096, max_files=7)
    root = await inproc.root(folder)
    fh, _ = await create(inproc, root, b"f")
    await inproc.ops.write(fh, 0, b"q" * 33)
    await inproc.ops.release(fh)
    get = inproc.ops.getxattr
    assert await get(root, b"user.vfd.quota.max_bytes", CTX) == b"4096"
    assert await get(root, b"user.vfd.quota.max_files", CTX) == b"7"
    assert await get(root, b"user.vfd.quota.used_bytes", CTX) == b"33"
    assert await get(root, b"user.vfd.quota.used_files", CTX) == b"1"
    names = await inproc.ops.listxattr(root, CTX)
    assert b"user.vfd.quota.used_bytes" in names
    await expect_errno(
        errno.EPERM, inproc.ops.setxattr(root, b"user.vfd.quota.max_bytes", b"0", CTX)
    )
    ro_root = await inproc.root(folder, View.RO)
    assert await get(ro_root, b"user.vfd.quota.used_files", CTX) == b"1"
    f = (await inproc.ops.lookup(root, b"f", CTX)).st_ino
    await expect_errno(pyfuse3.ENOATTR, get(f, b"user.vfd.quota.used_bytes", CTX))
