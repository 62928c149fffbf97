"""A whole node for the file-operation tests: ``vfd up`` (mountd + daemon) on a tmp state dir,
once per module and store backend, with CLI and HTTP clients acting as test users.

A module may add lines to the node's ``vfd.toml`` with ``NODE_CONFIG = "..."`` (TOML text).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from filenode import Node, fuse_missing


@pytest.fixture(scope="module")
def node(database_url: str, request: pytest.FixtureRequest) -> Iterator[Node]:
    why = fuse_missing()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"FUSE is required in CI: {why}")
        print(f"file-operation tests skipped: {why}")
        pytest.skip(why)
    # a short path: unix socket paths are limited to 107 bytes
    state_dir = Path(tempfile.mkdtemp(prefix="vfd-files-", dir="/tmp"))
    extra = getattr(request.module, "NODE_CONFIG", "")
    (state_dir / "vfd.toml").write_text(f"database_url = {json.dumps(database_url)}\n{extra}")
    n = Node.launch(state_dir)
    try:
        n.wait_ready()
        yield n
    finally:
        n.stop()
        shutil.rmtree(state_dir, ignore_errors=True)
