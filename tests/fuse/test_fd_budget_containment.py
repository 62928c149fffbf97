"""The containment tests again, with mountd's inode descriptor cache at its smallest.

With ``fuse.fd_cache = 16`` requests keep finding their inodes' descriptors evicted: by
number (opened again from the file handle, ``open_by_handle_at``) and by name (a lookup
that finds the evicted inode and compares handles). Containment must hold on those paths as
on the held-descriptor one; the mountd's figures at the end show that they were taken.
The tests are those of ``test_containment_crossing``, ``_symlinks`` and ``_top``, collected
here once more against this module's mountd (``test_fd_budget_races`` does the races).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import test_containment_crossing
import test_containment_symlinks
import test_containment_top
from harness import MountdProcess, churning_mountd
from test_containment_symlinks import outside  # noqa: F401 - a fixture its tests use

from conftest import require_fuse

pytestmark = pytest.mark.fuse

for _module in (test_containment_crossing, test_containment_symlinks, test_containment_top):
    for _name, _test in vars(_module).items():
        if _name.startswith("test_"):
            globals()[_name] = _test


@pytest.fixture(scope="module")
def mountd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MountdProcess]:
    """A mountd with the smallest descriptor cache (the kernel caching names and attributes
    as usual, so that it asks about inodes by number, whose descriptors were evicted)."""
    require_fuse()
    yield from churning_mountd(tmp_path_factory.mktemp("fd-min"))
