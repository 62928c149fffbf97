"""The reader of tar streams (``vfd.tarread``) against archives
written by ``tarfile`` in each format, by the CLI (``vfd.cli.tarsend``), and broken ones."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from vfd.cli import tarsend
from vfd.tarread import DIRECTORY, SYMLINK, TarError, TarReader

KiB = 1 << 10


def archive(fmt: int, entries: list[tuple[str, str, bytes]]) -> bytes:
    """A tar archive in format ``fmt`` of (kind, name, data or link target) entries."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt, encoding="utf-8") as tar:
        for kind, name, data in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000 + len(name)
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o750
                tar.addfile(info)
            elif kind == "link":
                info.type, info.linkname = tarfile.SYMTYPE, os.fsdecode(data)
                tar.addfile(info)
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o640
                tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def read_all(body: bytes) -> list[tuple[str, int, int, int, str, bytes]]:
    tar = TarReader(io.BufferedReader(io.BytesIO(body)))  # type: ignore[arg-type]
    out = []
    while (m := tar.next()) is not None:
        data = b""
        if m.isreg():
            data = tar.read(m.size)
            tar.end_data()
        out.append((m.name, m.kind, m.mode, m.mtime, m.linkname, data))
    return out


ENTRIES = [
    ("dir", "top", b""),
    ("file", "top/small", b"abc"),
    ("file", "top/" + "long" * 40, os.urandom(3 * KiB + 1)),  # past 100 bytes of name
    ("file", "top/" + "d" * 90 + "/" + "e" * 60, b"prefixed"),  # ustar splits it
    ("file", os.fsdecode(b"top/\xff\xfename"), b"not utf-8"),
    ("file", "top/\u00e9t\u00e9", b"utf-8"),
    ("link", "top/link", b"small"),
    ("link", "top/longlink", b"x" * 150),
    ("file", "top/empty", b""),
    ("fifo", "top/fifo", b""),
]


@pytest.mark.parametrize(
    "fmt",
    [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT],
    ids=["ustar", "gnu", "pax"],
)
def test_tarread_reads_what_tarfile_writes(fmt: int) -> None:
    entries = ENTRIES
    if fmt == tarfile.USTAR_FORMAT:  # no long names, no bytes that are not UTF-8... in ustar
        entries = [e for e in ENTRIES if "long" not in e[1] and "\udcff" not in e[1]]
    got = read_all(archive(fmt, entries))
    assert [g[0] for g in got] == [e[1] for e in entries]
    for (kind, name, data), (_n, k, mode, mtime, link, read) in zip(entries, got, strict=True):
        assert mtime == 1_700_000_000 + len(name)
        if kind == "dir":
            assert (k, mode) == (DIRECTORY, 0o750)
        elif kind == "link":
            assert (k, link) == (SYMLINK, os.fsdecode(data))
        elif kind == "fifo":
            assert k == ord("6")
        else:
            assert (read, mode) == (data, 0o640)


def test_tarread_reads_big_numbers_and_skips_unread_data() -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("old")
        info.mtime = -5  # base-256 in GNU format
        info.size = 2000
        tar.addfile(info, io.BytesIO(b"z" * 2000))
        info = tarfile.TarInfo("next")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"n"))
    tar_ = TarReader(io.BufferedReader(io.BytesIO(out.getvalue())))  # type: ignore[arg-type]
    first = tar_.next()
    assert first is not None and (first.mtime, first.size) == (-5, 2000)
    second = tar_.next()  # the first's data skipped
    assert second is not None and second.name == "next" and tar_.read(5) == b"n"
    assert tar_.next() is None and tar_.ended


def test_tarread_reads_the_cli_archives() -> None:
    body = archive(tarfile.GNU_FORMAT, [("file", "a", b"1")])
    members = [tarsend.Member(b"d", None, mode=0o755, mtime=7)]
    assert tarsend.header(members[0])[:2] == b"d/"
    got = read_all(b"".join(tarsend.header(m) for m in members) + bytes(1024))
    assert got == [("d", DIRECTORY, 0o755, 7, "", b"")]
    assert read_all(body)[0][0] == "a"


@pytest.mark.parametrize(
    ("broken", "words"),
    [
        (lambda b: b"", "empty"),
        (lambda b: bytes(1024), "empty"),
        (lambda b: b[:700], "ends inside"),  # inside the first member's data
        (lambda b: b[:300], "ends inside a header"),
        (lambda b: b[:1024] + b"junk" + b[1028:], "checksum"),  # the second header
        (lambda b: b"x" * 512, "checksum"),
    ],
    ids=["empty", "zeros", "cut-in-data", "cut-in-header", "bad-second-header", "not-tar"],
)
def test_tarread_refuses_broken_archives(broken: object, words: str) -> None:
    body = archive(tarfile.GNU_FORMAT, [("file", "a", b"x" * 10), ("file", "b", b"y")])
    assert callable(broken)
    with pytest.raises(TarError, match=words):
        read_all(broken(body))
