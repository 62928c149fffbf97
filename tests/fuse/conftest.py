"""Fixtures for the FUSE tests: a real mountd per module, a fresh folder per test.

Tests that need a real mount take ``mountd`` or ``folder``; in-process tests of the
``Operations`` object take ``inproc`` (no mount, no store, call the handlers directly).
Where FUSE cannot run (no ``/dev/fuse``, no ``fusermount3``, not root) mount tests are
skipped with the reason — unless the environment variable ``CI`` is set, where a missing
FUSE is a failure, not a skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from harness import Folder, MountdProcess, fuse_unavailable

from vfd.config import Config, load_config
from vfd.folders import layout
from vfd.folders.quota import Limits
from vfd.fuse.inodes import Folder as FolderState
from vfd.fuse.inodes import InodeTable, View
from vfd.fuse.ops import VfdOperations
from vfd.fuse.registry import Registry


def require_fuse() -> None:
    """Skip (or, under CI, fail) when real FUSE mounts cannot run here."""
    why = fuse_unavailable()
    if why is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"FUSE tests cannot run: {why} (CI is set, so this is a failure)")
    print(f"skipping FUSE test: {why}")
    pytest.skip(f"FUSE unavailable: {why}")


@pytest.fixture(scope="module")
def mountd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MountdProcess]:
    """One started mountd for the whole test module."""
    require_fuse()
    proc = MountdProcess(tmp_path_factory.mktemp("mountd"))
    proc.start()
    try:
        yield proc
    finally:
        proc.close()


@pytest.fixture
def folder(mountd: MountdProcess) -> Folder:
    """A new attached folder in a new scope, without limits."""
    return mountd.new_folder()


@pytest.fixture
def fresh_mountd(tmp_path: Path) -> Iterator[MountdProcess]:
    """A mountd of the test's own (not started), for tests that stop and restart it."""
    require_fuse()
    proc = MountdProcess(tmp_path)
    try:
        yield proc
    finally:
        proc.close()


# -- in-process: the Operations object without a mount ----------------------------------


@dataclass(frozen=True)
class Ctx:
    """Stands in for pyfuse3's RequestContext (which only pyfuse3 can make)."""

    uid: int = 0
    gid: int = 0
    pid: int = 0
    umask: int = 0o022


@dataclass
class RecordingNotifier:
    """Records what the kernel would have been told to invalidate."""

    entries: list[tuple[int, bytes]] = field(default_factory=list)
    inodes: list[int] = field(default_factory=list)

    def invalidate_entry(self, parent: int, name: bytes) -> None:
        self.entries.append((parent, name))

    def invalidate_inode(self, ino: int) -> None:
        self.inodes.append(ino)

    async def drain(self) -> None:
        pass


@dataclass
class InProcess:
    """A VfdOperations over a registry on a temporary host, called directly."""

    config: Config
    registry: Registry
    ops: VfdOperations
    notifier: RecordingNotifier

    def new_folder(
        self, *, scope: str | None = None, max_bytes: int = 0, max_files: int = 0
    ) -> FolderState:
        sc = layout.Scope.parse(scope) if scope else layout.Scope("user", uuid.uuid4())
        vfid = uuid.uuid4()
        host_root = self.config.host_path("local")
        path = layout.folder_path(host_root, sc, vfid)
        layout.create_folder_dir(path, uid=0, gid=0, project=False)
        folder = self.registry.attach(vfid.hex, "local", str(sc), path)
        self.registry.set_limits("local", str(sc), Limits(max_bytes, max_files))
        return folder

    async def root(self, folder: FolderState, view: View = View.RW) -> int:
        """Look the folder root up through ``view``; its inode number."""
        e = await self.ops.lookup(view.dir_id, folder.vfid.encode(), Ctx())
        return int(e.st_ino)


@pytest.fixture
def inproc(tmp_path: Path) -> Iterator[InProcess]:
    """Operations on a registry of their own; no FUSE, no store."""
    config = load_config(state_dir=tmp_path, env={})
    notifier = RecordingNotifier()
    registry = Registry(config, InodeTable(), notifier)
    ops = VfdOperations(registry, entry_timeout=1.0, attr_timeout=1.0)
    try:
        yield InProcess(config, registry, ops, notifier)
    finally:
        ops.close()
        registry.close()
