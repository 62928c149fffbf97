"""The daemon's unpacking of an uploaded archive (``vfd.daemon.userfs.unpack_tar``), on a plain
directory standing for a folder view: what is made (files with their modes and times,
directories, links), what is left out, and what is refused with nothing left behind."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from vfd.daemon.userfs import FolderFS, Identity, unpack_tar
from vfd.errors import ErrorCode, VfdError


def tar_of(*members: tuple[tarfile.TarInfo, bytes | None]) -> io.BufferedReader:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return io.BufferedReader(io.BytesIO(out.getvalue()))  # type: ignore[arg-type]


def info(name: str, kind: bytes = tarfile.REGTYPE, **fields: object) -> tarfile.TarInfo:
    made = tarfile.TarInfo(name)
    made.type = kind
    made.mtime = 1_600_000_000
    for key, value in fields.items():
        setattr(made, key, value)
    return made


@pytest.fixture
def fs(tmp_path: Path) -> FolderFS:
    (tmp_path / "view").mkdir()
    return FolderFS(str(tmp_path / "view"), Identity(os.getuid(), os.getgid()))


def test_unpack_makes_files_dirs_links_with_modes_and_times(fs: FolderFS) -> None:
    big = os.urandom(3 << 20)  # past one write piece
    stream = tar_of(
        (info("t", tarfile.DIRTYPE, mode=0o750, mtime=1_500_000_000), None),
        (info("t/run.sh", mode=0o755, size=3), b"#!\n"),
        (info("t/odd", mode=0o666, size=1), b"o"),  # bits the umask would take
        (info("t/deep/er/big", mode=0o600, size=len(big)), big),
        (info("t/link", tarfile.SYMTYPE, linkname="run.sh"), None),
        (info("t/hard", tarfile.LNKTYPE, linkname="t/run.sh"), None),
        (info("t/fifo", tarfile.FIFOTYPE), None),
        (info("t/\udcffname", size=2), b"ff"),
    )
    made = unpack_tar(fs, "", "unpack-key-1", stream)
    root = Path(fs.root)
    assert (made.entries, made.files, made.links, made.bytes) == (["t"], 4, 1, 3 + 1 + len(big) + 2)
    assert made.skipped == ["t/hard (a hard link)", "t/fifo (a FIFO)"]
    st = (root / "t").stat()
    assert (stat.S_IMODE(st.st_mode), st.st_mtime) == (0o750, 1_500_000_000)
    for name, mode in (("run.sh", 0o755), ("odd", 0o666), ("deep/er/big", 0o600)):
        st = (root / "t" / name).stat()
        assert (stat.S_IMODE(st.st_mode), st.st_mtime) == (mode, 1_600_000_000), name
    assert (root / "t/deep/er/big").read_bytes() == big
    assert os.readlink(root / "t/link") == "run.sh"
    assert os.listdir(os.fsencode(root / "t")).count(b"\xffname") == 1
    assert sorted(os.listdir(root)) == ["t"]  # the staging directory is gone


@pytest.mark.parametrize(
    ("members", "code"),
    [
        ([(info("ok", size=1), b"1"), (info("../out", size=1), b"x")], ErrorCode.INVALID_PATH),
        ([(info("ok", size=1), b"1"), (info("/abs", size=1), b"x")], ErrorCode.INVALID_PATH),
        ([(info("d/f", size=1), b"1"), (info("d/f", size=1), b"2")], ErrorCode.PATH_EXISTS),
        ([(info("exists", size=1), b"1")], ErrorCode.PATH_EXISTS),
        ([(info("adir", size=1), b"1")], ErrorCode.PATH_EXISTS),
    ],
    ids=["dotdot", "absolute", "twice", "existing-file", "existing-dir"],
)
def test_unpack_refusals_leave_nothing(
    fs: FolderFS, members: list[tuple[tarfile.TarInfo, bytes]], code: ErrorCode
) -> None:
    root = Path(fs.root)
    (root / "exists").write_bytes(b"old")
    (root / "adir").mkdir()
    with pytest.raises(VfdError) as caught:
        unpack_tar(fs, "", "unpack-key-2", tar_of(*members))
    assert caught.value.code is code
    assert sorted(os.listdir(root)) == ["adir", "exists"]
    assert (root / "exists").read_bytes() == b"old"


def test_unpack_overwrite_replaces_files_only(fs: FolderFS) -> None:
    root = Path(fs.root)
    (root / "exists").write_bytes(b"old")
    unpack_tar(fs, "", "unpack-key-3", tar_of((info("exists", size=3), b"new")), overwrite=True)
    assert (root / "exists").read_bytes() == b"new"


def test_unpack_refuses_a_body_that_is_not_tar(fs: FolderFS) -> None:
    with pytest.raises(VfdError) as caught:
        unpack_tar(fs, "", "unpack-key-4", io.BufferedReader(io.BytesIO(b"x" * 2048)))  # type: ignore[arg-type]
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT
    assert os.listdir(fs.root) == []
