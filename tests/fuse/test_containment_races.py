"""Swapping backing entries for symlinks while the mount looks them up never leaks outside data.

A folder's backing directory may change under the server at any time (another node, an
admin, the server's own renames). The server opens every name relative to its parent's
``O_PATH`` descriptor with ``O_NOFOLLOW``, so whatever a name is at the instant of the
lookup — directory, file or symlink — is what the kernel is told, and a symlink goes back to
the kernel as a symlink. Here a thread exchanges (``renameat2(RENAME_EXCHANGE)``, atomic) a
real directory or file with a symlink to an outside secret in a tight loop, while a process
chrooted at the mount point (so the kernel cannot reach the secret by following the link
itself, see test_containment_symlinks) opens, stats and lists the name. Every outcome is
allowed — the inside data, ENOENT, ENOTDIR, ELOOP, ESTALE — except the outside secret or a
listing of the outside directory.

The mount used here has entry and attribute timeouts of 0, so every path walk reaches the
server instead of the kernel's dentry cache.
"""

from __future__ import annotations

import errno
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from fsprobe import RENAME_EXCHANGE, fork_call, make_dir, make_file, renameat2
from harness import MountdProcess, fuse_unavailable

pytestmark = pytest.mark.fuse

SECRET = b"OUTSIDE-SECRET-must-never-be-read-through-the-mount"
INSIDE = b"inside data"
SECONDS = 2.0


@pytest.fixture(scope="module")
def mountd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MountdProcess]:
    """A mount without kernel caching of names and attributes (every lookup is a request)."""
    why = fuse_unavailable()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"FUSE tests cannot run: {why} (CI is set, so this is a failure)")
        pytest.skip(f"FUSE unavailable: {why}")
    proc = MountdProcess(tmp_path_factory.mktemp("races"), entry_timeout=0.0, attr_timeout=0.0)
    try:
        proc.start()
        yield proc
    finally:
        proc.close()


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    d = make_dir(tmp_path / "outside", mode=0o755)
    make_file(d / "f", data=SECRET)
    make_file(d / "outside-only-entry", data=SECRET)
    return d


def _probe(path: str, mode: str, seconds: float) -> dict[str, int]:
    """In the chrooted child: hammer ``path``; count outcomes; stop at the first leak."""
    seen: Counter[str] = Counter()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if mode == "read":
                with open(path, "rb") as f:
                    data = f.read()
                if SECRET in data:
                    return {"LEAK": 1}
                seen["inside" if data == INSIDE else "other-data"] += 1
            elif mode == "list":
                names = os.listdir(path)
                if "outside-only-entry" in names:
                    return {"LEAK": 1}
                seen["listed"] += 1
            else:
                st = os.stat(path)
                seen[f"stat-size-{st.st_size}"] += 1
                if st.st_size == len(SECRET):
                    return {"LEAK": 1}
        except OSError as exc:
            seen[errno.errorcode.get(exc.errno or 0, "?")] += 1
    return dict(seen)


def _race(mountd: MountdProcess, a: Path, b: Path, path: str, mode: str) -> tuple[dict, int]:
    """Exchange backing entries ``a`` and ``b`` until the chrooted probe of ``path`` ends."""
    child = fork_call(_probe, path, mode, SECONDS, chroot=mountd.mount_point)
    swaps = 0
    deadline = time.monotonic() + SECONDS + 60
    while not child.done() and time.monotonic() < deadline:
        renameat2(a, b, RENAME_EXCHANGE)
        swaps += 1
    return child.result(timeout=60), swaps


@pytest.mark.parametrize("link", ["absolute", "relative"])
@pytest.mark.parametrize("mode", ["read", "list", "stat"])
def test_containment_directory_swapped_for_symlink(
    mountd: MountdProcess, outside: Path, link: str, mode: str
) -> None:
    """``d`` flips between a real directory and a link to an outside directory: reading
    ``d/f``, listing ``d`` and stat-ing ``d/f`` never yield the outside data."""
    folder = mountd.new_folder()
    make_dir(folder.backing / "d")
    make_file(folder.backing / "d" / "f", data=INSIDE)
    target = str(outside) if link == "absolute" else os.path.relpath(outside, folder.backing)
    os.symlink(target, folder.backing / "alt")
    path = f"/rw/{folder.vfid}/d" + ("" if mode == "list" else "/f")
    seen, swaps = _race(mountd, folder.backing / "d", folder.backing / "alt", path, mode)
    print(f"{swaps} swaps; outcomes {seen}")
    assert "LEAK" not in seen, f"outside data reached through the mount: {seen}"
    assert swaps > 100, f"only {swaps} swaps happened"
    assert sum(seen.values()) > 20, seen


@pytest.mark.parametrize("link", ["absolute", "relative"])
def test_containment_file_swapped_for_symlink(
    mountd: MountdProcess, outside: Path, link: str
) -> None:
    """``f`` flips between a file and a link to an outside file: reads through rw/ and ro/
    see the inside data or an error, never the outside file."""
    folder = mountd.new_folder()
    make_file(folder.backing / "f", data=INSIDE)
    target = str(outside / "f")
    if link == "relative":
        target = os.path.relpath(outside / "f", folder.backing)
    os.symlink(target, folder.backing / "alt")
    for view in ("rw", "ro"):
        path = f"/{view}/{folder.vfid}/f"
        seen, swaps = _race(mountd, folder.backing / "f", folder.backing / "alt", path, "read")
        print(f"{view}: {swaps} swaps; outcomes {seen}")
        assert "LEAK" not in seen, f"outside data reached through {view}/: {seen}"
        assert swaps > 100 and seen.get("inside", 0) > 0, (swaps, seen)


def test_containment_parent_swapped_while_creating(mountd: MountdProcess, outside: Path) -> None:
    """Creating files in ``d`` while ``d`` flips to a link to an outside directory never
    creates anything outside: new files land in the folder or the create fails."""
    folder = mountd.new_folder()
    make_dir(folder.backing / "d")
    os.symlink(str(outside), folder.backing / "alt")
    before = sorted(os.listdir(outside))

    def create(path: str, seconds: float) -> dict[str, int]:
        seen: Counter[str] = Counter()
        deadline = time.monotonic() + seconds
        i = 0
        while time.monotonic() < deadline:
            i += 1
            try:
                fd = os.open(f"{path}/new-{i}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                os.close(fd)
                seen["created"] += 1
            except OSError as exc:
                seen[errno.errorcode.get(exc.errno or 0, "?")] += 1
        return dict(seen)

    child = fork_call(create, f"/rw/{folder.vfid}/d", SECONDS, chroot=mountd.mount_point)
    swaps = 0
    while not child.done():
        renameat2(folder.backing / "d", folder.backing / "alt", RENAME_EXCHANGE)
        swaps += 1
    seen = child.result()
    print(f"{swaps} swaps; outcomes {seen}")
    assert sorted(os.listdir(outside)) == before, "a file was created outside the folder"
    real = next(p for p in (folder.backing / "d", folder.backing / "alt") if not p.is_symlink())
    assert len(os.listdir(real)) == seen.get("created", 0)
    assert swaps > 100
