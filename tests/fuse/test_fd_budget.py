"""mountd's descriptors are bounded by ``[fuse] fd_cache``, not by what the kernel caches.

Inodes keep a file handle and their ``O_PATH`` descriptor lives in an LRU (``vfd.fuse.handles``).
Checked here: a 200,000-file tree read and 100,000 files made through a mount whose mountd
may hold 1,024 descriptors; a file deleted behind mountd's back answers ESTALE, and a new
file that gets its backing inode number a new inode number of its own; running out of
descriptors cuts the cache, refuses what cannot be served with EMFILE and says so in one
line; open files and file systems without handles keep their descriptors; the setting.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from harness import Folder, MountdProcess

from conftest import Ctx, InProcess, require_fuse
from vfd.config import FD_CACHE_MIN, load_config
from vfd.errors import ErrorCode, VfdError
from vfd.folders.quota import Limits, Usage
from vfd.fuse.handles import MIN_CAPACITY, FdCache, auto_capacity, handle_of
from vfd.fuse.inodes import FALLBACK_BASE, O_PATH_FLAGS, InodeTable, View
from vfd.fuse.inodes import Folder as FolderState
from vfd.fuse.usage import ScopeUsage

CTX = Ctx()
OUT_OF_FDS = "mountd is out of file descriptors"


def mountd_fds(mountd: MountdProcess) -> int:
    return len(os.listdir(f"/proc/{mountd.pid}/fd"))


class FdWatch:
    """Samples how many descriptors mountd holds, in a thread, until stopped."""

    def __init__(self, mountd: MountdProcess) -> None:
        self.mountd = mountd
        self.most = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.most = max(self.most, mountd_fds(self.mountd))
            self.samples += 1

    def __enter__(self) -> FdWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def recount(backing: Path) -> tuple[int, int]:
    """(bytes, files) below a folder's backing root, as mountd counts them (directories are
    files; the root is not counted)."""
    nbytes = files = 0
    for top, dirs, names in os.walk(backing):
        files += len(dirs) + len(names)
        nbytes += sum(os.lstat(os.path.join(top, n)).st_size for n in names)
    return nbytes, files


def write_file(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read_file(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


@pytest.fixture
def tight_mountd(tmp_path: Path) -> Iterator[MountdProcess]:
    """A mountd that may open 1,024 descriptors in all (soft and hard limit), the cache sized
    by itself (``auto``)."""
    require_fuse()
    proc = MountdProcess(tmp_path, nofile=1024, env={"VFD_FUSE_FD_CACHE": "auto"})
    proc.start()
    try:
        yield proc
    finally:
        proc.close()


# -- the scale test ----------------------------------------------------------------------

DIRS, PER_DIR = 200, 1000
NEW_DIRS = 100


def _content(d: int, i: int) -> bytes:
    return f"{d}/{i}\n".encode()


def _build(backing: Path, d: int) -> None:
    top = backing / f"d{d:03}"
    top.mkdir()
    for i in range(PER_DIR):
        write_file(str(top / f"f{i:04}"), _content(d, i))


def _stat_and_read(rw: Path, d: int) -> int:
    """Stat and read every file of one directory through the mount; how many."""
    top = rw / f"d{d:03}"
    seen = 0
    with os.scandir(top) as it:
        names = sorted(e.name for e in it)
    assert len(names) == PER_DIR
    for name in names:
        path = f"{top}/{name}"
        st = os.lstat(path)
        i = int(name[1:])
        assert stat.S_ISREG(st.st_mode) and st.st_size == len(_content(d, i)), path
        assert read_file(path) == _content(d, i), path
        seen += 1
    return seen


def _create(rw: Path, d: int) -> None:
    top = rw / f"new{d:03}"
    os.mkdir(top)
    for i in range(PER_DIR):
        write_file(f"{top}/n{i:04}", b"n" * (i % 7))


@pytest.mark.fuse
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_fd_budget_200k_files_read_and_100k_made_under_1024_descriptors(
    tight_mountd: MountdProcess,
) -> None:
    """Through a mount whose mountd may hold 1,024 descriptors: stat and read every file of a
    200,000-file tree, make 100,000 files; no error, mountd stays under its limit, and the
    usage it keeps equals a recount of the disk."""
    mountd = tight_mountd
    folder = mountd.new_folder()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda d: _build(folder.backing, d), range(DIRS)))
    mountd.call("rescan", host=folder.host, scope=folder.scope)  # made behind its back
    with FdWatch(mountd) as watch, ThreadPoolExecutor(4) as pool:
        seen = sum(pool.map(lambda d: _stat_and_read(folder.rw, d), range(DIRS)))
        list(pool.map(lambda d: _create(folder.rw, d), range(NEW_DIRS)))
    assert seen == DIRS * PER_DIR
    assert watch.samples > 0 and watch.most < 1024, watch.most
    nbytes, files = recount(folder.backing)
    assert files == DIRS * (PER_DIR + 1) + NEW_DIRS * (PER_DIR + 1)
    usage = mountd.usage(folder)
    assert (usage["used_bytes"], usage["used_files"]) == (nbytes, files)
    # and a rescan finds nothing to correct
    scope = mountd.call("rescan", host=folder.host, scope=folder.scope)["scopes"][0]
    assert scope["before"] == scope["after"]
    log = mountd.log_path.read_text()
    assert OUT_OF_FDS not in log and "Traceback" not in log


# -- deleted behind mountd's back; inode numbers reused ----------------------------------


@pytest.fixture
def small_cache_mountd(tmp_path: Path) -> Iterator[MountdProcess]:
    """The smallest cache, and no kernel caching of names or attributes: every access is a
    request to mountd, which mostly has to open the inode again from its handle."""
    require_fuse()
    proc = MountdProcess(
        tmp_path,
        env={"VFD_FUSE_FD_CACHE": str(FD_CACHE_MIN)},
        entry_timeout=0.0,
        attr_timeout=0.0,
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.close()


def _evict(folder: Folder, n: int = 4 * FD_CACHE_MIN) -> None:
    """Make mountd look up ``n`` other inodes, so that those it had are evicted."""
    other = folder.rw / f"other-{uuid.uuid4().hex[:8]}"
    other.mkdir()
    for i in range(n):
        (other / f"{i}").write_bytes(b"o")
        os.lstat(other / f"{i}")


@pytest.mark.fuse
def test_fd_budget_file_deleted_behind_mountds_back_is_estale(
    small_cache_mountd: MountdProcess,
) -> None:
    """An inode whose descriptor was evicted and whose backing file was then deleted (not
    through the mount) answers ESTALE; before the eviction it is still served."""
    folder = small_cache_mountd.new_folder()
    (folder.rw / "a").write_bytes(b"data")
    held = os.open(folder.rw / "a", os.O_PATH)  # the kernel keeps the inode; no open
    try:
        assert os.fstat(held).st_size == 4
        _evict(folder)
        assert os.fstat(held).st_size == 4  # opened again from its handle
        _evict(folder)
        os.unlink(folder.backing / "a")
        with pytest.raises(OSError) as exc:
            os.fstat(held)
        assert exc.value.errno == errno.ESTALE
        assert not (folder.rw / "a").exists()
    finally:
        os.close(held)
    assert small_cache_mountd.call("health")


@pytest.mark.fuse
def test_fd_budget_reused_backing_inode_number_gets_a_new_inode(
    small_cache_mountd: MountdProcess,
) -> None:
    """A file deleted behind mountd's back while the kernel still knows it, whose backing
    inode number a new file then gets: the new file has another ``st_ino`` in the mount and
    its own contents, and the old inode answers ESTALE — no inode number of the mount stands
    for two files."""
    folder = small_cache_mountd.new_folder()
    (folder.rw / "old").write_bytes(b"old contents")
    held = os.open(folder.rw / "old", os.O_PATH)
    try:
        old_ino = os.fstat(held).st_ino
        backing_ino = os.lstat(folder.backing / "old").st_ino
        _evict(folder)
        os.unlink(folder.backing / "old")
        reused = None
        for i in range(200):  # the backing file system hands the freed number out again
            path = folder.backing / f"new{i}"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, b"new contents")
                ino = os.fstat(fd).st_ino
            finally:
                os.close(fd)
            if ino == backing_ino:
                reused = path.name
                break
            os.unlink(path)
        if reused is None:
            pytest.skip("the backing file system did not reuse a freed inode number")
        st = os.lstat(folder.rw / reused)
        assert st.st_ino != old_ino
        assert st.st_ino >= FALLBACK_BASE  # a counter number, not the derived one
        assert (folder.rw / reused).read_bytes() == b"new contents"
        with pytest.raises(OSError) as exc:
            os.fstat(held)
        assert exc.value.errno == errno.ESTALE
        assert os.lstat(folder.rw / reused).st_ino == st.st_ino
    finally:
        os.close(held)


# -- out of descriptors ------------------------------------------------------------------


@pytest.mark.fuse
def test_fd_budget_out_of_descriptors_cuts_the_cache_refuses_with_emfile_and_says_so_once(
    tmp_path: Path,
) -> None:
    """A cache set larger than the open-file limit allows: lookups go on (the cache is cut
    when an open fails with EMFILE); open files beyond the limit are refused with EMFILE
    while mountd serves on; one warning line names the limit and the setting."""
    require_fuse()
    mountd = MountdProcess(tmp_path, nofile=200, env={"VFD_FUSE_FD_CACHE": "100000"})
    mountd.start()
    try:
        folder = mountd.new_folder()
        for i in range(1000):
            write_file(str(folder.backing / f"f{i}"), f"{i}".encode())
        for i in range(1000):  # more inodes than descriptors
            assert os.lstat(folder.rw / f"f{i}").st_size == len(f"{i}")
        held: list[int] = []
        refused = None
        try:
            for i in range(1000):
                try:
                    held.append(os.open(folder.rw / f"f{i}", os.O_RDONLY))
                except OSError as exc:
                    refused = exc
                    break
            assert refused is not None and refused.errno == errno.EMFILE, refused
            assert 50 < len(held) < 100  # two descriptors per open file, and some for itself
            # the files open are served on
            assert [os.pread(fd, 8, 0) for fd in held] == [
                f"{i}".encode() for i in range(len(held))
            ]
            # a control request while mountd has no descriptor to spare: its accept fails
            # with EMFILE, the connection waits, and it is answered once some are back (it
            # used to end the control server, and mountd with it)
            pool = ThreadPoolExecutor(1)
            waiting = pool.submit(mountd.call, "health")
        finally:
            for fd in held:
                os.close(fd)
        assert waiting.result(timeout=60)
        pool.shutdown()
        assert mountd.proc is not None and mountd.proc.poll() is None
        assert mountd.call("health")
        for i in range(1000):
            assert read_file(str(folder.rw / f"f{i}")) == f"{i}".encode()
        (folder.rw / "after").write_bytes(b"ok")
        lines = [ln for ln in mountd.log_path.read_text().splitlines() if OUT_OF_FDS in ln]
        assert len(lines) == 1, lines
        assert "open-file limit 200" in lines[0] and "fd_cache" in lines[0]
        assert "LimitNOFILE" in lines[0]
    finally:
        mountd.close()


# -- in process: the table's rules -------------------------------------------------------


def _table_folder(path: Path) -> FolderState:
    fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    st = os.fstat(fd)
    usage = ScopeUsage("local", "user:x", Limits(), Usage())
    return FolderState("0" * 32, "local", "user:x", path, usage, fd, (st.st_dev, st.st_ino))


def _remember(table: InodeTable, folder: FolderState, path: Path, view: View = View.RW):  # type: ignore[no-untyped-def]
    fd = os.open(path, O_PATH_FLAGS)
    return table.remember(view, folder, fd, os.fstat(fd))


def _open_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_fd_budget_table_holds_at_most_its_capacity(tmp_path: Path) -> None:
    """200 inodes, a cache of 16: at most 16 descriptors are open; every inode is served
    (opened again from its handle); forgetting them all closes everything."""
    for i in range(200):
        (tmp_path / f"f{i}").write_bytes(b"x" * i)
    folder = _table_folder(tmp_path)
    table = InodeTable(MIN_CAPACITY)
    before = _open_count()
    try:
        inodes = [_remember(table, folder, tmp_path / f"f{i}") for i in range(200)]
        assert _open_count() - before <= MIN_CAPACITY
        assert sum(inode.cached for inode in inodes) == MIN_CAPACITY
        for i, inode in enumerate(inodes):
            assert os.fstat(inode.fd).st_size == i
        assert _open_count() - before <= MIN_CAPACITY + 1  # + the folder's mount descriptor
        stats = table.fds.stats()
        assert stats["reopens"] >= 200 - MIN_CAPACITY and stats["evictions"] > 0
        # the most recently used are the ones kept
        assert all(inode.cached for inode in inodes[-MIN_CAPACITY:])
        for inode in inodes:
            table.forget(inode.id, 1)
        assert len(table) == 0 and len(table.fds) == 0 and table.fds.pinned == 0
    finally:
        table.close_all()
        folder.close()
    assert _open_count() == before - 1  # the folder's own descriptor too


def test_fd_budget_reused_number_is_a_new_inode_in_the_table(tmp_path: Path) -> None:
    """The table's rule, without relying on the file system to reuse numbers: an evicted
    inode whose key a lookup finds again with another handle is dropped from the keys (it
    answers ESTALE) and the new file gets a counter number; the same handle keeps the inode."""
    (tmp_path / "a").write_bytes(b"a")
    (tmp_path / "b").write_bytes(b"bb")
    folder = _table_folder(tmp_path)
    table = InodeTable(MIN_CAPACITY)
    try:
        a = _remember(table, folder, tmp_path / "a")
        for i in range(2 * MIN_CAPACITY):
            (tmp_path / f"x{i}").write_bytes(b"")
            _remember(table, folder, tmp_path / f"x{i}")
        assert not a.cached and a.handle is not None
        # the same file again: the same inode, which keeps the new descriptor
        again = _remember(table, folder, tmp_path / "a")
        assert again is a and a.cached and a.nlookup == 2
        for i in range(2 * MIN_CAPACITY):
            _remember(table, folder, tmp_path / f"x{i}")
        assert not a.cached
        # b, reported under a's (dev, ino) as a reused number would be
        fd = os.open(tmp_path / "b", O_PATH_FLAGS)
        st = os.fstat(fd)
        fake = os.stat_result((st.st_mode, a.key[1], a.key[0], *tuple(st)[3:]))
        b = table.remember(View.RW, folder, fd, fake)
        assert b is not a and b.id >= FALLBACK_BASE and b.id != a.id
        assert table.find(View.RW, a.key) is b and table.get(a.id) is a
        assert os.fstat(b.fd).st_size == 2
        with pytest.raises(OSError) as exc:
            a.fd  # noqa: B018
        assert exc.value.errno == errno.ESTALE
        assert table.renumbered == 1
        table.forget(a.id, 2)  # the kernel forgets the old one: the new one stays
        assert table.find(View.RW, a.key) is b
    finally:
        table.close_all()
        folder.close()


@pytest.mark.trio
async def test_fd_budget_open_files_and_directories_are_pinned(inproc: InProcess) -> None:
    """An open file keeps its descriptor through any number of other lookups, and so stays
    usable after its last name is removed behind mountd's back; an open directory too."""
    folder = inproc.new_folder()
    root = await inproc.root(folder)
    (folder.path / "f").write_bytes(b"kept")
    (folder.path / "d").mkdir()
    ops, table = inproc.ops, inproc.registry.table
    f = await ops.lookup(root, b"f", CTX)
    d = await ops.lookup(root, b"d", CTX)
    info = await ops.open(f.st_ino, os.O_RDONLY, CTX)
    dh = await ops.opendir(d.st_ino, CTX)
    for i in range(4 * MIN_CAPACITY):
        (folder.path / f"x{i}").write_bytes(b"")
        await ops.lookup(root, f"x{i}".encode(), CTX)
    node, dnode = table.get(f.st_ino), table.get(d.st_ino)
    assert node is not None and dnode is not None and node.cached and dnode.cached
    assert table.fds.pinned == 2
    os.unlink(folder.path / "f")
    os.rmdir(folder.path / "d")
    assert (await ops.getattr(f.st_ino, CTX)).st_nlink == 0
    assert await ops.read(info.fh, 0, 10) == b"kept"
    await ops.release(info.fh)
    await ops.releasedir(dh)
    assert table.fds.pinned == 0 and node in table.fds and dnode in table.fds


def _all_held(path: Path, names: list[str]) -> None:
    """Inodes of the directory ``path`` in a table of the smallest size all stay open."""
    state = _table_folder(path)
    table = InodeTable(MIN_CAPACITY)
    try:
        inodes = [_remember(table, state, path / name) for name in names]
        assert all(inode.cached for inode in inodes)
        assert table.fds.pinned == len(names) and len(table.fds) == 0
        assert state.key[0] in table.fds.no_handles
        for name, inode in zip(names, inodes, strict=True):
            assert os.fstat(inode.fd).st_ino == os.lstat(path / name).st_ino
    finally:
        table.close_all()
        state.close()


def test_fd_budget_file_systems_without_handles_keep_descriptors() -> None:
    """Inodes on a file system that gives no file handles (procfs: EOPNOTSUPP) are held
    open whatever the cache size — the documented fallback."""
    path = Path("/proc/sys/kernel")
    probe = os.open(path, O_PATH_FLAGS)
    try:
        assert handle_of(probe) is None
    finally:
        os.close(probe)
    names = sorted(n for n in os.listdir(path) if not (path / n).is_dir())[: 3 * MIN_CAPACITY]
    assert len(names) > 2 * MIN_CAPACITY
    _all_held(path, names)


@pytest.mark.fuse
def test_fd_budget_fuse_backing_keeps_descriptors(mountd: MountdProcess) -> None:
    """A FUSE file system gives handles, but whether they open again once the kernel drops
    the inode is its server's affair: inodes there are held open too (here the backing is
    vfd's own mount)."""
    folder = mountd.new_folder()
    names = [f"f{i}" for i in range(3 * MIN_CAPACITY)]
    for name in names:
        (folder.rw / name).write_bytes(b"y")
    probe = os.open(folder.rw / names[0], O_PATH_FLAGS)
    try:
        assert handle_of(probe) is not None  # handles are given; they are not used
    finally:
        os.close(probe)
    _all_held(folder.rw, names)


# -- the setting -------------------------------------------------------------------------


def test_fd_budget_setting(tmp_path: Path) -> None:
    """``[fuse] fd_cache``: "auto" or a whole number of at least 16, also from the
    environment; anything else is refused naming the key and the source."""
    assert load_config(state_dir=tmp_path, env={}).fuse.fd_cache is None
    assert auto_capacity(1024) == (1024 - 128) // 2
    assert auto_capacity(1 << 20) == 65536 and auto_capacity(100) == MIN_CAPACITY
    conf = tmp_path / "vfd.toml"
    for text, want in (("5000", 5000), ('"auto"', None), ("16", 16)):
        conf.write_text(f"[fuse]\nfd_cache = {text}\n")
        assert load_config(state_dir=tmp_path, env={}).fuse.fd_cache == want
    env = {"VFD_FUSE_FD_CACHE": "64"}
    assert load_config(state_dir=tmp_path, env=env).fuse.fd_cache == 64
    for bad in ("15", "-1", "1.5", '"many"', "true", "[]"):
        conf.write_text(f"[fuse]\nfd_cache = {bad}\n")
        with pytest.raises(VfdError) as exc:
            load_config(state_dir=tmp_path, env={})
        assert exc.value.code is ErrorCode.CONFIG_INVALID
        assert re.search(
            r"vfd\.toml: fuse\.fd_cache: must be \"auto\" or a whole number", str(exc.value)
        )
    conf.write_text("")
    with pytest.raises(VfdError) as exc:
        load_config(state_dir=tmp_path, env={"VFD_FUSE_FD_CACHE": "lots"})
    assert "VFD_FUSE_FD_CACHE: fuse.fd_cache" in str(exc.value)


def test_fd_budget_cache_cut_keeps_the_most_recent() -> None:
    """Cut when out of descriptors: the older half goes, the capacity follows; the newest
    entries (those an operation is using) stay."""

    class Item:
        def __init__(self) -> None:
            self.open = True

        def drop_fd(self) -> bool:
            self.open = False
            return True

    cache = FdCache(64)
    items = [Item() for _ in range(64)]
    for item in items:
        cache.add(item)
    calls = []

    def fails_once() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise OSError(errno.EMFILE, "too many")
        return 7

    assert cache.opening(fails_once) == 7
    assert len(cache) == 32 and cache.capacity == 32
    assert not any(i.open for i in items[:32]) and all(i.open for i in items[32:])
    with pytest.raises(OSError):
        cache.opening(lambda: (_ for _ in ()).throw(OSError(errno.EMFILE, "still")))
    assert cache.out_of_fds == 1
