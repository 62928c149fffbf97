"""The containment race tests again, with mountd's inode descriptor cache at its smallest
(see ``test_fd_budget_containment``): the swaps race against lookups that find evicted
inodes and compare their file handles."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import test_containment_races
from harness import MountdProcess, churning_mountd
from test_containment_races import outside  # noqa: F401 - a fixture its tests use

from conftest import require_fuse

pytestmark = pytest.mark.fuse

for _name, _test in vars(test_containment_races).items():
    if _name.startswith("test_"):
        globals()[_name] = _test


@pytest.fixture(scope="module")
def mountd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MountdProcess]:
    """As ``test_containment_races``'s mountd, with the smallest descriptor cache."""
    require_fuse()
    # no kernel caching: every access is a fresh lookup by name, which finds the evicted
    # inode and compares handles (a request by number follows its lookup at once)
    yield from churning_mountd(
        tmp_path_factory.mktemp("races-fd-min"),
        by_handle=False,
        entry_timeout=0.0,
        attr_timeout=0.0,
    )
