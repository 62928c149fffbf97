"""``vfd admin uploads prune``: abandoned upload part files are removed and usage recounted."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from filenode import Node

DAY = 86400


def _start_upload(node: Node, user: dict[str, Any], folder: str, path: str, key: str) -> None:
    """Send the first 1000 of 5000 bytes: the upload stays unfinished, in a part file."""
    with node.http(user["email"]) as http:
        r = http.put(
            f"/v1/vfolders/{folder}/upload",
            params={"path": path, "key": key, "size": 5000, "offset": 0},
            content=b"p" * 1000,
        )
        assert r.status_code == 200, r.text
        assert r.json()["complete"] is False


def test_files_uploads_prune_removes_only_abandoned_parts(node: Node, tmp_path: Path) -> None:
    alice = node.user()
    folder = node.folder(alice)
    name, backing = folder["name"], node.backing(folder)
    node.cli.ok("vfolder", "mkdir", name, "sub", as_=alice["email"])
    _start_upload(node, alice, name, "old.bin", "oldkey0001")
    _start_upload(node, alice, name, "sub/fresh.bin", "freshkey01")
    old_part = backing / ".vfd-upload-oldkey0001.part"
    fresh_part = backing / "sub" / ".vfd-upload-freshkey01.part"
    assert old_part.stat().st_size == 1000 and fresh_part.stat().st_size == 1000
    week_ago = time.time() - 8 * DAY
    # aged through the view, so that the kernel's cached attributes say so too
    view = Path(node.cli.json("vfolder", "info", name, as_=alice["email"])["views"]["rw"])
    os.utime(view / old_part.name, (week_ago, week_ago))
    # a link to a directory outside the folder holding an old part file: never followed
    outside = tmp_path / "outside"
    outside.mkdir()
    bait = outside / ".vfd-upload-baitkey001.part"
    bait.write_bytes(b"b" * 10)
    os.utime(bait, (week_ago, week_ago))
    os.symlink(outside, backing / "link")
    before = node.usage(folder)["used_bytes"]

    node.cli.fails("admin", "uploads", "prune", code="admin_required", as_=alice["email"])

    dry = node.cli.json("admin", "uploads", "prune", "--dry-run")
    mine = [r for r in dry["removed"] if r["vfolder"] == name]
    assert [(r["path"], r["bytes"]) for r in mine] == [(".vfd-upload-oldkey0001.part", 1000)]
    assert mine[0]["idle_seconds"] >= 8 * DAY - 60
    assert dry["dry_run"] is True and old_part.exists()

    done = node.cli.json("admin", "uploads", "prune")
    assert [r["path"] for r in done["removed"] if r["vfolder"] == name] == [
        ".vfd-upload-oldkey0001.part"
    ]
    assert done["older_than"] == 7 * DAY
    assert not old_part.exists() and fresh_part.exists() and bait.exists()
    assert node.usage(folder)["used_bytes"] == before - 1000

    # the pruned upload cannot resume where it was: it is told to start over
    with node.http(alice["email"]) as http:
        r = http.put(
            f"/v1/vfolders/{name}/upload",
            params={"path": "old.bin", "key": "oldkey0001", "size": 5000, "offset": 1000},
            content=b"p",
        )
    assert r.status_code == 409, r.text
    assert r.json()["error"]["details"]["offset"] == 0

    # a shorter age takes the fresh one too
    out = node.cli.ok("admin", "uploads", "prune", "--older-than", "0")
    assert "Removed" in out and not fresh_part.exists()


def test_files_uploads_prune_bad_duration_is_a_usage_error(node: Node) -> None:
    out = node.cli.usage_error("admin", "uploads", "prune", "--older-than", "soon")
    assert "not a duration" in out
