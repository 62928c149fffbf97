"""``vfd vfolder download --dest DIR``: a missing DIR is made, and unmade when nothing came; a
directory is unpacked into DIR whole or not at all, with only the links that stay inside it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from filenode import Node

sys.path.insert(0, str(Path(__file__).parents[1] / "cli"))
from vfdcli import run_vfd

VFD = Path(sys.executable).parent / "vfd"


def test_files_download_dest_is_made_when_missing(node: Node, tmp_path: Path) -> None:
    alice = node.user()
    name, a = node.folder(alice)["name"], alice["email"]
    source = tmp_path / "part-0.csv"
    source.write_text("a,b\n1,2\n")
    node.cli.ok("vfolder", "upload", name, str(source), as_=a)

    dest = tmp_path / "downloads" / "deeper"
    out = node.cli.ok("vfolder", "download", name, "part-0.csv", "--dest", str(dest), as_=a)
    assert f"to {dest}" in out
    assert (dest / "part-0.csv").read_text() == "a,b\n1,2\n"


def test_files_download_failure_leaves_no_new_directory(node: Node, tmp_path: Path) -> None:
    alice = node.user()
    name, a = node.folder(alice)["name"], alice["email"]
    dest = tmp_path / "never" / "made"
    node.cli.fails(
        "vfolder",
        "download",
        name,
        "missing.csv",
        "--dest",
        str(dest),
        code="path_not_found",
        as_=a,
    )
    assert not (tmp_path / "never").exists()


def test_files_download_dest_that_is_a_file_is_refused(node: Node, tmp_path: Path) -> None:
    alice = node.user()
    name, a = node.folder(alice)["name"], alice["email"]
    plain = tmp_path / "plain"
    plain.write_text("x")
    error = node.cli.fails(
        "vfolder", "download", name, "x", "--dest", str(plain), code="not_a_directory", as_=a
    )
    assert str(plain) in error["message"]


def test_files_download_tree_makes_only_links_that_stay_inside(node: Node, tmp_path: Path) -> None:
    alice = node.user()
    folder = node.folder(alice)
    name, a = folder["name"], alice["email"]
    view = node.config.mount_point / "rw" / folder["id"]
    (view / "tree" / "sub").mkdir(parents=True)  # as a session would, through the view
    (view / "tree" / "f.txt").write_text("f")
    for link, target in (
        ("abs", "/etc/passwd"),
        ("up", "../../.."),
        ("sibling", "../other"),
        ("ok", "f.txt"),
        ("sub/back", "../f.txt"),
        ("dangling", "nowhere"),
    ):
        os.symlink(target, view / "tree" / link)

    dest = tmp_path / "dest"
    proc = run_vfd(
        VFD, "--as", a, "vfolder", "download", name, "tree", "-d", str(dest), env=node.env
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    for skipped in ("tree/abs", "tree/up", "tree/sibling"):
        assert f"warning: skipped {skipped}: a link " in proc.stderr, proc.stderr
    tree = dest / "tree"
    assert sorted(p.name for p in tree.iterdir()) == ["dangling", "f.txt", "ok", "sub"]
    assert os.readlink(tree / "ok") == "f.txt" and (tree / "ok").read_text() == "f"
    assert os.readlink(tree / "sub" / "back") == "../f.txt"
    assert os.readlink(tree / "dangling") == "nowhere"
    assert sorted(p.name for p in dest.iterdir()) == ["tree"]  # no staging left

    result = node.cli.json("vfolder", "download", name, "tree", "-d", str(tmp_path), as_=a)
    skipped = {s["path"]: s["reason"] for s in result["downloaded"][0]["skipped"]}
    assert set(skipped) == {"tree/abs", "tree/up", "tree/sibling"}
    assert "absolute" in skipped["tree/abs"]
    # run again: refused up front, nothing merged or staged
    node.cli.fails("vfolder", "download", name, "tree", "-d", str(dest), code="path_exists", as_=a)
    assert sorted(p.name for p in dest.iterdir()) == ["tree"]


def test_files_download_part_file_is_new_or_cut_at_the_offset(tmp_path: Path) -> None:
    """A download from the start writes a new part file, never one truncated to nothing
    (ext4 writes such a file back when it is closed); a resume keeps the bytes before the
    offset and drops those past it."""
    from vfd.cli.transfer import _open_part

    part = tmp_path / "f.vfd-part"
    part.write_bytes(b"0123456789")
    old = part.stat().st_ino
    fd = _open_part(part, 4)
    try:
        os.write(fd, b"ab")
    finally:
        os.close(fd)
    assert part.read_bytes() == b"0123ab"
    assert part.stat().st_ino == old
    fd = _open_part(part, 0)
    try:
        assert os.fstat(fd).st_size == 0
        os.write(fd, b"new")
    finally:
        os.close(fd)
    assert part.read_bytes() == b"new"
    fd = _open_part(tmp_path / "fresh.vfd-part", 0)
    os.close(fd)
    assert (tmp_path / "fresh.vfd-part").read_bytes() == b""
