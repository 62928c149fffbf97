"""The daemon's tar writer for downloads with ``archive=true`` (:mod:`vfd.daemon.tarwrite`):
the headers are :mod:`tarfile`'s bytes, every member says what the file system holds, and
GNU tar and :mod:`tarfile` both read the stream."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

from vfd.daemon import tarwrite


def fake_stat(mode: int, uid: int, gid: int, mtime: float) -> os.stat_result:
    return os.stat_result((mode, 1, 1, 1, uid, gid, 0, int(mtime), mtime, int(mtime)))


@pytest.mark.parametrize(
    ("name", "kind", "size", "link", "uid", "mtime"),
    [
        ("a", tarfile.REGTYPE, 0, "", 1000, 1_700_000_000),
        ("dir/sub/file.bin", tarfile.REGTYPE, 4096, "", 0, 0),
        ("d/", tarfile.DIRTYPE, 0, "", 65534, 1_700_000_000.75),
        ("l", tarfile.SYMTYPE, 0, "../target/x", 1000, 1),
        ("x" * 100, tarfile.REGTYPE, 7, "", 1, 1),
        ("x" * 101, tarfile.REGTYPE, 7, "", 1, 1),  # pax: a long name
        ("caf\u00e9", tarfile.REGTYPE, 7, "", 1, 1),  # pax: not ASCII
        ("raw\udcff", tarfile.REGTYPE, 7, "", 1, 1),  # pax, binary: not UTF-8
        ("l2", tarfile.SYMTYPE, 0, "t" * 101, 1, 1),
        ("l3", tarfile.SYMTYPE, 0, "caf\u00e9", 1, 1),
        ("big", tarfile.REGTYPE, 8**11, "", 1, 1),  # pax: size past 8 GiB
        ("id", tarfile.REGTYPE, 1, "", 8**7, 1),  # pax: a large uid
        ("old", tarfile.REGTYPE, 1, "", 1, -5),
    ],
)
def test_headers_are_tarfiles(
    name: str, kind: bytes, size: int, link: str, uid: int, mtime: float
) -> None:
    is_dir = kind == tarfile.DIRTYPE
    st = fake_stat(0o40755 if is_dir else 0o100644, uid, 100, mtime)
    info = tarfile.TarInfo(name)
    info.mode = 0o755 if is_dir else 0o644
    info.uid, info.gid, info.mtime = uid, 100, int(mtime)
    info.type, info.size, info.linkname = kind, size, link
    want = info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")
    assert tarwrite.header(name, st, kind, size, link) == want


def make_tree(root: Path) -> None:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "empty").mkdir()
    for i, size in enumerate([0, 1, 511, 512, 513, 4096, 3 << 20]):
        (root / "sub" / f"f{i}").write_bytes(os.urandom(size))
    (root / ("long" * 30)).write_bytes(b"long name")
    (root / "sub" / "deeper" / "caf\u00e9").write_bytes(b"utf-8 name")
    os.symlink("sub/f1", root / "link")
    os.symlink("/etc/passwd", root / "sub" / "out")
    os.mkfifo(root / "fifo")
    os.chmod(root / "sub" / "f2", 0o600)


def written(dfd: int, arcname: str, skipped: list[str]) -> bytes:
    """What :func:`tarwrite.write_tree` writes into a pipe, read by another thread."""
    r, w = os.pipe()
    chunks: list[bytes] = []

    def drain() -> None:
        while data := os.read(r, 1 << 20):
            chunks.append(data)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        tarwrite.write_tree(dfd, arcname, w, skipped)
    finally:
        os.close(w)
        reader.join()
        os.close(r)
    return b"".join(chunks)


def test_stream_says_what_the_tree_holds_and_tar_reads_it(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    make_tree(src)
    dfd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    try:
        skipped: list[str] = []
        ours = written(dfd, "src", skipped)
    finally:
        os.close(dfd)
    assert skipped == ["src/fifo (a FIFO)"]
    with tarfile.open(fileobj=io.BytesIO(ours), mode="r|") as tar:
        seen = {}
        for m in tar:
            seen[m.name] = m
            st = os.lstat(tmp_path / m.name)
            assert (m.mode, m.uid, m.gid, m.mtime) == (
                stat.S_IMODE(st.st_mode),
                st.st_uid,
                st.st_gid,
                int(st.st_mtime),
            ), m.name
            if m.isfile():
                assert m.size == st.st_size
                data = tar.extractfile(m)
                assert data is not None and data.read() == (tmp_path / m.name).read_bytes()
            elif m.issym():
                assert m.linkname == os.readlink(tmp_path / m.name)
            else:
                assert m.isdir() and stat.S_ISDIR(st.st_mode), m.name
    expected = {str(p.relative_to(tmp_path)) for p in [src, *src.rglob("*")] if not p.is_fifo()}
    assert set(seen) == expected
    assert len(ours) % 512 == 0
    out = tmp_path / "gnu"
    out.mkdir()
    subprocess.run(["tar", "-C", str(out), "-xf", "-"], input=ours, check=True)
    for path in src.rglob("*"):
        got = out / path.relative_to(tmp_path)
        if path.is_fifo():
            assert not got.exists() and not got.is_symlink()
        elif path.is_symlink():
            assert os.readlink(got) == os.readlink(path)
        elif path.is_file():
            assert got.read_bytes() == path.read_bytes()
            assert got.stat().st_mode == path.stat().st_mode
    with tarfile.open(fileobj=io.BytesIO(ours), mode="r|") as tar:
        names = [m.name for m in tar]
    assert "src/sub/deeper/caf\u00e9" in names and f"src/{'long' * 30}" in names


def test_a_file_that_shrinks_while_archived_ends_the_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"x" * 4096)
    real_header = tarwrite.header

    def header_then_truncate(name: str, *args: object, **kwargs: object) -> bytes:
        if name == "src/a":  # its size is in the header: now it shrinks
            os.truncate(src / "a", 10)
        return real_header(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tarwrite, "header", header_then_truncate)
    dfd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(OSError, match="shrank"):
            written(dfd, "src", [])
    finally:
        os.close(dfd)
