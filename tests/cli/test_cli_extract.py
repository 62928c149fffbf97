"""How the CLI unpacks a directory's archive (:class:`vfd.cli.transfer._Extractor`): what it
makes, with which modes, and what it skips, never leading through a link or out of the
staging directory."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

from vfd import tarread
from vfd.cli.transfer import _Extractor


def archive(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def entry(
    name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, link: str = ""
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname, info.mtime = kind, mode, link, 1_600_000_000
    return info


def extract(staging: Path, body: bytes) -> _Extractor:
    out = _Extractor(staging, "top")
    try:
        tar = tarread.TarReader(io.BytesIO(body))
        while (m := tar.next()) is not None:
            out.member(tar, m)
    finally:
        out.close()
    return out


def test_extract_makes_files_dirs_and_inside_links_and_skips_the_rest(tmp_path: Path) -> None:
    body = archive(
        [
            (entry("top", tarfile.DIRTYPE, 0o700), None),
            (entry("top/a.txt", mode=0o777), b"all bits"),
            (entry("top/ro.txt", mode=0o400), b"read only"),
            (entry("top/sub/deep.txt", mode=0o640), b"parents made"),
            (entry("top/in", tarfile.SYMTYPE, link="sub/deep.txt"), None),
            (entry("top/dirlink", tarfile.SYMTYPE, link="sub"), None),
            (entry("top/out", tarfile.SYMTYPE, link="../../etc"), None),
            (entry("top/abs", tarfile.SYMTYPE, link="/etc/passwd"), None),
            (entry("top/dirlink/through.txt"), b"not through a link"),
            (entry("top/hard", tarfile.LNKTYPE, link="top/a.txt"), None),
            (entry("top/hard-out", tarfile.LNKTYPE, link="other/x"), None),
            (entry("top/fifo", tarfile.FIFOTYPE), None),
            (entry("other/x"), b"not inside top"),
            (entry("top/../escape"), b"up and out"),
        ]
    )
    out = extract(tmp_path, body)
    top = tmp_path / "top"
    assert (top / "a.txt").read_bytes() == b"all bits"
    assert stat.S_IMODE((top / "a.txt").stat().st_mode) == 0o755
    assert stat.S_IMODE((top / "ro.txt").stat().st_mode) == 0o600
    assert stat.S_IMODE((top / "sub" / "deep.txt").stat().st_mode) == 0o640
    assert (top / "a.txt").stat().st_mtime == 1_600_000_000
    assert os.readlink(top / "in") == "sub/deep.txt"
    assert (top / "hard").stat().st_ino == (top / "a.txt").stat().st_ino
    assert not (top / "sub" / "through.txt").exists()
    assert not (tmp_path / "other").exists() and not (tmp_path / "escape").exists()
    reasons = {s["path"]: s["reason"] for s in out.skipped}
    assert set(reasons) == {
        "top/out",
        "top/abs",
        "top/dirlink/through.txt",
        "top/hard-out",
        "top/fifo",
        "other/x",
        "top/../escape",
    }
    assert reasons["top/dirlink/through.txt"] == "a name leading through a link or a file"
    assert reasons["top/fifo"] == "a FIFO"
    assert "absolute" in reasons["top/abs"] and "outside" in reasons["top/out"]
    assert out.count == 7  # top, a.txt, ro.txt, sub/deep.txt, in, dirlink, hard (sub: implicit)


def test_extract_keeps_non_utf8_names(tmp_path: Path) -> None:
    name = "top/raw\udcff.bin"
    out = extract(tmp_path, archive([(entry(name), b"bytes kept")]))
    assert out.skipped == [] and out.count == 1
    assert (tmp_path / "top" / b"raw\xff.bin".decode("utf-8", "surrogateescape")).exists()
    assert os.listdir(os.fsencode(tmp_path / "top")) == [b"raw\xff.bin"]
