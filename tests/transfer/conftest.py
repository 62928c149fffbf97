"""A whole node (``vfd up``: mountd + daemon) for the transfer data-path tests, once per
module and store backend; the helpers are the file-operation tests' (tests/files)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "files"))
from filenode import Node, running_node


@pytest.fixture(scope="module")
def node(database_url: str) -> Iterator[Node]:
    yield from running_node(database_url, prefix="vfd-xfer-")
