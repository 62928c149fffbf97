"""A whole node for the file-operation tests: ``vfd up`` (mountd + daemon) on a tmp state dir,
once per module and store backend, with CLI and HTTP clients acting as test users.

A module may add lines to the node's ``vfd.toml`` with ``NODE_CONFIG = "..."`` (TOML text).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from filenode import Node, running_node


@pytest.fixture(scope="module")
def node(database_url: str, request: pytest.FixtureRequest) -> Iterator[Node]:
    extra = getattr(request.module, "NODE_CONFIG", "")
    yield from running_node(database_url, prefix="vfd-files-", extra=extra)
