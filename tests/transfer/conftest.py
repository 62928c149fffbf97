"""A whole node (``vfd up``: mountd + daemon) for the transfer data-path tests, once per
module and store backend; the helpers are the file-operation tests' (tests/files)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "files"))
from filenode import Node, fuse_missing


@pytest.fixture(scope="module")
def node(database_url: str) -> Iterator[Node]:
    why = fuse_missing()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"FUSE is required in CI: {why}")
        pytest.skip(why)
    state_dir = Path(tempfile.mkdtemp(prefix="vfd-xfer-", dir="/tmp"))
    (state_dir / "vfd.toml").write_text(f"database_url = {json.dumps(database_url)}\n")
    n = Node.launch(state_dir)
    try:
        n.wait_ready()
        yield n
    finally:
        n.stop()
        shutil.rmtree(state_dir, ignore_errors=True)
