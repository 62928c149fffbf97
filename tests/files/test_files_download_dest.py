"""``vfd vfolder download --dest DIR``: a missing DIR is made, and unmade when nothing came."""

from __future__ import annotations

from pathlib import Path

from filenode import Node


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
