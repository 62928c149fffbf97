"""Fixtures of the session tests: a node with sessions on (one per module, SQLite), and the
test image. A module may add lines to the node's ``vfd.toml`` with ``NODE_CONFIG = "..."``.

Sessions need docker and FUSE: without them these tests skip, printing why — except in CI,
where they fail.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from sessionnode import IMAGE, SessionNode, build_image, node_fixture, require_docker_and_fuse


@pytest.fixture(scope="module")
def node(request: pytest.FixtureRequest) -> Iterator[SessionNode]:
    yield from node_fixture(request)


@pytest.fixture(scope="session")
def image() -> str:
    require_docker_and_fuse()
    build_image()
    return IMAGE
